// The reference for "how fast can a Node.js proxy be here": a plain TCP relay in one Node.js process,
// client socket piped to a backend socket and back, no SMTP at all. Whatever smtp-lb costs above
// this is its own work; what this costs is Node's (sockets, streams, the event loop).
// Usage: node node-pipe.js LISTEN_PORT BACKEND_PORT (both on 127.0.0.1).
import net from 'node:net';

const [listenPort, backendPort] = process.argv.slice(2).map(Number);
const HOST = '127.0.0.1';

net
  .createServer((client) => {
    const backend = net.connect(backendPort!, HOST);
    client.setNoDelay(true);
    backend.setNoDelay(true);
    client.pipe(backend);
    backend.pipe(client);
    client.on('error', () => backend.destroy());
    backend.on('error', () => client.destroy());
  })
  .listen(listenPort, HOST);
