// A free TCP port for a server a test is about to start: the kernel picks one for a throwaway
// listener, which is closed before the port is handed out (another process could take it in between,
// which is rare enough on loopback that callers simply fail loudly if their server cannot bind).
// Within one process a port is handed out once: the kernel may offer a just-closed port again, and
// two ports asked for one after the other (a node's listener and its admin) must differ.
import net from 'node:net';

const handedOut = new Set<string>();

function pick(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = await pick(host);
    const key = `${host}:${port}`;
    if (!handedOut.has(key) || attempt >= 20) {
      handedOut.add(key);
      return port;
    }
  }
}
