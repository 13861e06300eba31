// A TCP relay to a server (Redis in the round-trip test and bench) that holds every chunk coming
// back from it for `ms` before passing it on; one delay for all, so the order is kept. A command
// that has to wait for an earlier reply then shows as one more `ms` on the clock.
import net from 'node:net';

export interface HoldingRelay {
  port: number;
  close(): Promise<void>;
}

export function holdingRelay(targetPort: number, ms: number, host = '127.0.0.1'): Promise<HoldingRelay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port: targetPort });
    sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      setTimeout(() => {
        if (!client.destroyed) client.write(d);
      }, ms);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  return new Promise((resolve) => {
    server.listen(0, host, () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
