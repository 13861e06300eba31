// Postfix's smtp-sink on a free loopback port: a fast SMTP server that accepts and drops every
// message, for benchmarks and for relay targets whose content does not matter.
import { freePort } from './free-port.js';
import { type ManagedProcess, startProcess, waitForPort } from './process.js';

const HOST = '127.0.0.1';

export interface SmtpSinkOptions {
  /** Default: a free port. */
  port?: number;
  /** Listen backlog (smtp-sink's second argument). Default 256. */
  backlog?: number;
  /** More smtp-sink options, placed before the address (e.g. ['-c'] for counters, ['-8'] no 8BITMIME). */
  args?: string[];
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** host:port, e.g. for startPostfix({ relayTo }). */
  readonly address: string;
  /** What smtp-sink printed (with -c: its counters). */
  output(): string;
  stop(): Promise<void>;
}

export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const port = options.port ?? (await freePort(HOST));
  // smtp-sink refuses to run as root without a user to switch to after binding.
  const asUser = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const args = [...asUser, ...(options.args ?? []), `${HOST}:${port}`, String(options.backlog ?? 256)];
  const sink: ManagedProcess = startProcess('smtp-sink', 'smtp-sink', args);
  try {
    await waitForPort(port, { host: HOST, process: sink });
  } catch (err) {
    await sink.stop();
    throw err;
  }
  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    output: () => sink.output(),
    async stop() {
      await sink.stop();
    },
  };
}
