// A Postfix policy service (SMTPD_POLICY_README) on a free loopback port: reads `name=value` lines
// up to a blank line, records each request, and answers `action=<what answer() says>`. For tests
// of the node's own policy client and of what a real Postfix tells its policy service.
import { createServer, type Socket } from 'node:net';

export interface PolicyService {
  readonly port: number;
  /** 127.0.0.1:<port> */
  readonly address: string;
  /** Every request so far, as name -> value. */
  readonly requests: Array<Record<string, string>>;
  /** What to answer (the action, e.g. `DUNNO`, `REJECT`, `DEFER try later`). */
  answer: (request: Record<string, string>) => string;
  close(): Promise<void>;
}

export async function startPolicyService(
  answer: (request: Record<string, string>) => string = () => 'DUNNO',
): Promise<PolicyService> {
  const requests: Array<Record<string, string>> = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buf = '';
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
        const attrs: Record<string, string> = {};
        for (const line of buf.slice(0, end).split('\n')) {
          const eq = line.indexOf('=');
          if (eq > 0) attrs[line.slice(0, eq)] = line.slice(eq + 1);
        }
        buf = buf.slice(end + 2);
        requests.push(attrs);
        socket.write(`action=${service.answer(attrs)}\n\n`);
      }
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const service: PolicyService = {
    port,
    address: `127.0.0.1:${port}`,
    requests,
    answer,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
  return service;
}
