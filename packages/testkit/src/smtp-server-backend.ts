// A backend written by other people: Nodemailer's smtp-server on 127.0.0.1 (port 0 unless given), with
// XCLIENT and optionally the PROXY protocol (v1: the only version it reads) on, recording what it
// understood of each message: the envelope, the content with its dot-stuffing removed by its own
// parser, and the client as XCLIENT or the PROXY header told it. An independent oracle for our front
// and upstream, next to the capture backend, which is our own reading of the RFCs.
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

export interface SmtpServerBackendOptions {
  /** Port on 127.0.0.1; default 0 (a free one). */
  port?: number;
  /** The server's name in its greeting and EHLO reply; default `smtp-server.test`. */
  hostname?: string;
  /** Expect a PROXY v1 header before the greeting (smtp-server's `useProxy`). */
  proxyProtocol?: boolean;
  /** Text of the 250 after the final dot (smtp-server adds the code and 2.6.0); default `Ok: queued as <id>`. */
  dataReply?: (msg: ReceivedMessage) => string | undefined;
  /** Offer DSN (smtp-server's `hideDSN: false`; off by default, as in smtp-server). */
  dsn?: boolean;
}

export interface ReceivedMessage {
  id: number;
  mailFrom: string;
  rcptTo: string[];
  /** The content as smtp-server handed it over: dot-stuffing removed, line endings as sent. */
  data: Buffer;
  /** The client as smtp-server saw it after XCLIENT or the PROXY header. */
  client: { address: string; port: number; helo: string };
  /** XCLIENT attributes smtp-server took (upper-case names). */
  xclient: Record<string, string>;
  /** MAIL's and each RCPT's parameters as smtp-server parsed them (upper-case names). */
  mailArgs: Record<string, string | true>;
  rcptArgs: Array<Record<string, string | true>>;
  /** With `dsn`: what smtp-server's DSN support took of them (RET, ENVID; each RCPT's NOTIFY, ORCPT). */
  dsn?: {
    ret: string | null;
    envid: string | null;
    rcpts: Array<{ notify?: string[]; orcpt?: string }>;
  };
}

export interface SmtpServerBackend {
  host: string;
  port: number;
  /** `host:port` */
  address: string;
  messages: ReceivedMessage[];
  waitForMessages(n: number, timeoutMs?: number): Promise<ReceivedMessage[]>;
  close(): Promise<void>;
}

export async function startSmtpServerBackend(
  opts: SmtpServerBackendOptions = {},
): Promise<SmtpServerBackend> {
  const messages: ReceivedMessage[] = [];
  const waiters = new Set<() => void>();
  let nextId = 1;

  const onData = (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    done: (err?: Error | null, message?: string) => void,
  ) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const xclient: Record<string, string> = {};
      for (const [k, v] of session.xClient) if (!k.includes(':') && v !== false) xclient[k] = String(v);
      const envelope = session.envelope;
      const msg: ReceivedMessage = {
        id: nextId++,
        mailFrom: envelope.mailFrom ? envelope.mailFrom.address : '',
        rcptTo: envelope.rcptTo.map((r) => r.address),
        data: Buffer.concat(chunks),
        client: {
          address: session.remoteAddress,
          port: session.remotePort,
          helo: session.hostNameAppearsAs,
        },
        xclient,
        mailArgs: envelope.mailFrom ? { ...(envelope.mailFrom.args || {}) } : {},
        rcptArgs: envelope.rcptTo.map((r) => ({ ...(r.args || {}) })),
        ...(opts.dsn && envelope.dsn
          ? {
              dsn: {
                ret: envelope.dsn.ret,
                envid: envelope.dsn.envid,
                rcpts: envelope.rcptTo.map((r) => ({ ...r.dsn })),
              },
            }
          : {}),
      };
      messages.push(msg);
      for (const wake of waiters) wake();
      done(null, opts.dataReply?.(msg) ?? `Ok: queued as ${msg.id}`);
    });
  };

  const server = new SMTPServer({
    name: opts.hostname ?? 'smtp-server.test',
    banner: 'ESMTP smtp-server',
    logger: false,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideENHANCEDSTATUSCODES: false,
    hideDSN: !opts.dsn,
    useXClient: true,
    useProxy: opts.proxyProtocol ?? false,
    size: 104_857_600,
    onData,
  });
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    messages,
    waitForMessages(n, timeoutMs = 10_000) {
      if (messages.length >= n) return Promise.resolve(messages.slice(0, n));
      return new Promise((resolve, reject) => {
        const wake = () => {
          if (messages.length < n) return;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(messages.slice(0, n));
        };
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(`smtp-server backend: ${messages.length} of ${n} messages within ${timeoutMs} ms`),
          );
        }, timeoutMs);
        waiters.add(wake);
      });
    },
    close() {
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
