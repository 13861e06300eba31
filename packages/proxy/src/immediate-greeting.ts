// smtp-server holds every greeting for a fixed 100 ms to spot early talkers. A proxy in front of
// MTAs pays that on every connection (it halves new-connection throughput for 20 parallel
// senders), and the early-talker test is ours to configure (shaping.greeting: delay and action, in
// the front door). So the connection greets as soon as its listeners are set, keeping smtp-server's
// own maxClients check.
import { smtpConnectionPrototype } from './smtp-connection-class.js';

interface Connection {
  _server: { options: { maxClients?: number }; connections: Set<unknown> };
  name: string;
  _setListeners(cb: () => void): void;
  connectionReady(): void;
  send(code: number, data: string, context: false): void;
}

let installed = false;

export async function installImmediateGreeting(): Promise<void> {
  if (installed) return;
  const proto = await smtpConnectionPrototype();
  proto.init = function init(this: unknown) {
    const c = this as Connection;
    c._setListeners(() => {
      const max = c._server.options.maxClients;
      if (max && c._server.connections.size > max) {
        c.send(421, `${c.name} Too many connected clients, try again in a moment`, false);
        return;
      }
      c.connectionReady();
    });
  };
  installed = true;
}
