// A loopback TCP relay in front of Redis that a test can cut (a partition: connections drop and
// new ones are refused) or freeze (a hang: connections stay open but nothing is relayed until
// thawed), while Redis itself and its data stay as they are.
import { createConnection, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  readonly url: string;
  cut(): void;
  heal(): void;
  freeze(): void;
  /** Relays what was held back during the freeze, then carries on. */
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const flushers = new Set<() => void>();
  let open = true;
  let frozen = false;
  const relay = (from: Socket, to: Socket) => {
    const held: Buffer[] = [];
    const flush = () => {
      for (const d of held.splice(0)) to.write(d);
    };
    flushers.add(flush);
    from.on('data', (d: Buffer) => (frozen ? held.push(d) : to.write(d)));
    from.on('close', () => {
      flushers.delete(flush);
      to.destroy();
    });
  };
  const server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: () => {
      open = false;
      dropAll();
    },
    heal: () => {
      open = true;
    },
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      for (const f of flushers) f();
    },
    close: () => {
      dropAll();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
