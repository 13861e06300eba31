// The tests' backend: Nodemailer's smtp-server (the version in the lock file), an SMTP server written
// by other people, so a misreading of the RFCs by our front or upstream is not hidden by the same
// misreading on the other side. Faults come through its own hooks (onConnect, onMailFrom, onRcptTo,
// onData: a refusal is an error with `responseCode`, a hang is a callback never called, a dying
// backend destroys its socket there); XCLIENT and PROXY v1 are its own. What it understood is recorded
// from its session objects, and what it read off the wire by tapping the accepted socket.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type net from 'node:net';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerDataStream,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import { TestkitError } from './errors.js';

/** smtp-server's version, as installed from the lock file. */
export const smtpServerVersion: string = (
  createRequire(import.meta.url)('smtp-server/package.json') as { version: string }
).version;

export type CaptureKillPoint = 'before-greeting' | 'after-rcpt' | 'mid-data' | 'after-dot';

export interface CaptureReplyContext {
  /** The command line as smtp-server's parser read it. */
  command: string;
  verb: 'MAIL' | 'RCPT';
  /** Everything after the first space (`FROM:<a@b> BODY=8BITMIME`). */
  arg: string;
  /** The address smtp-server parsed out of it. */
  address: string;
  session: CapturedSession;
}

/** Extensions smtp-server can leave out of its EHLO reply (its `hide*` options, XCLIENT: `useXClient`). */
export type CaptureExtension =
  | 'PIPELINING'
  | '8BITMIME'
  | 'SMTPUTF8'
  | 'ENHANCEDSTATUSCODES'
  | 'SIZE'
  | 'XCLIENT';

export interface CaptureBackendOptions {
  /** Port; default 0 (a free one). */
  port?: number;
  /** Address to listen on; default 127.0.0.1 (another 127.0.0.x stands for another host). */
  host?: string;
  /** smtp-server's `name`: greeting `220 <name> ESMTP`, first EHLO line. Default `capture.test`. */
  hostname?: string;
  /** Offers STARTTLS with this certificate. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** smtp-server's `useProxy`: a PROXY v1 header (the only version it reads) before the greeting. */
  expectProxyHeader?: boolean;
  /** SIZE limit, advertised and enforced (`rejectOversized`); default 100 MiB. */
  size?: number;
  /** Extensions left out of the EHLO reply. */
  hide?: CaptureExtension[];
  /** Offer DSN (smtp-server's `hideDSN: false`; off by default, as in smtp-server). */
  dsn?: boolean;
  /**
   * The answer to a MAIL or RCPT command, through onMailFrom/onRcptTo: undefined accepts (smtp-server's
   * own `250 2.1.0 Accepted`), `'<code> <text>'` with a 4xx/5xx code refuses (smtp-server puts its own
   * enhanced code in front of the text: an enhanced code at the start of `text` is dropped), `null`
   * never calls back (a backend that hangs). smtp-server writes its success replies itself, so a 2xx
   * override is a test error.
   */
  reply?: (ctx: CaptureReplyContext) => string | null | undefined;
  /**
   * The answer after the final dot, through onData: undefined gives `250 2.6.0 Ok: queued as <id>`,
   * `'250 <text>'` another text, a 4xx/5xx refuses, `null` never calls back.
   */
  dataReply?: (msg: CapturedMessage) => string | null | undefined;
  /**
   * Destroy the socket at that point: before-greeting (in onConnect), after-rcpt (right after the 250
   * to the first RCPT of the session), mid-data (on the first content smtp-server hands over),
   * after-dot (message complete and recorded, no reply).
   */
  kill?: CaptureKillPoint;
  /** onConnect calls back this late: the greeting comes after it. */
  greetingDelayMs?: number;
  /**
   * Default true. When false, message content is not kept (`data` is empty, reads during DATA are left
   * out of `session.raw`); `size` and `sha256` stay exact. For messages larger than a test may hold.
   */
  keepData?: boolean;
}

export interface CapturedSession {
  id: number;
  /** smtp-server's session id (its log's `cid`). */
  cid: string;
  remotePort: number;
  /** Every command line smtp-server's parser read, without its line end. */
  lines: string[];
  /** Every chunk read from the socket after the PROXY header, in order (decrypted after STARTTLS). */
  raw: Buffer[];
  /** Every reply smtp-server wrote, as written (with CRLF). */
  replies: string[];
  /** The PROXY header's bytes, as smtp-server consumed them. */
  proxyHeader?: Buffer;
  /** XCLIENT attributes smtp-server took (`[UNAVAILABLE]` / `[TEMPUNAVAIL]` as it reads them: `false`). */
  xclient: Record<string, string | false>;
  /** The client as smtp-server sees it now (after XCLIENT ADDR/PORT or the PROXY header). */
  client: { address: string; port: number };
  /** Names given to EHLO or HELO, in order. */
  ehlo: string[];
  tls: boolean;
  closedBy?: 'client' | 'server';
  /** Concatenation of `raw`. */
  bytes(): Buffer;
}

export interface CapturedMessage {
  id: number;
  sessionId: number;
  mailFrom: string;
  /** MAIL parameters as smtp-server parsed them (`BODY=8BITMIME SMTPUTF8`), in the order given. */
  mailParams: string;
  /** Recipients smtp-server accepted in the transaction. */
  rcptTo: string[];
  /** The content as smtp-server's DATA parser handed it over: dot-stuffing removed. */
  data: Buffer;
  /** Length of the content (exact even when keepData is false). */
  size: number;
  /** Hex SHA-256 of the content. */
  sha256: string;
  /** The client as smtp-server saw it for this message (XCLIENT, PROXY header), and its HELO name. */
  client: { address: string; port: number; helo: string };
  /** The reply smtp-server wrote after the final dot (without its CRLF); undefined when killed or dataReply gave null. */
  reply?: string;
}

export interface CaptureBackend {
  host: string;
  port: number;
  /** `host:port` */
  address: string;
  sessions: CapturedSession[];
  messages: CapturedMessage[];
  /** Sessions open now: each from smtp-server's connect() to its close() (221, 421) or the client's FIN. */
  readonly current: number;
  /** The highest number of sessions open at once. */
  maxConcurrent: number;
  waitForMessages(n: number, timeoutMs?: number): Promise<CapturedMessage[]>;
  close(): Promise<void>;
}

/** What the recorder reaches inside smtp-server 3.21's SMTPConnection (checked at start). */
interface ConnectionInternals {
  id: string;
  _socket: net.Socket;
  _parser: { oncommand(command: Buffer, callback?: () => void): void };
  _createParser(): ConnectionInternals['_parser'];
  close(): void;
  _xClient: Map<string, string | number | false>;
  remoteAddress: string;
  remotePort: number;
}

interface Live {
  session: CapturedSession;
  conn?: ConnectionInternals;
  /** The accepted socket, and the TLS socket on top of it after STARTTLS. */
  sockets: net.Socket[];
  rcptSeen: boolean;
  killed: boolean;
  inData: boolean;
  counted: boolean;
}

const DEFAULT_SIZE = 104_857_600;
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;

export async function startCaptureBackend(opts: CaptureBackendOptions = {}): Promise<CaptureBackend> {
  const live = new Map<string, Live>();
  const headers = new WeakMap<net.Socket, { chunks: Buffer[]; unshifted: number }>();
  const sockets = new Set<net.Socket>();
  const waiters = new Set<() => void>();
  const hide = new Set(opts.hide ?? []);
  const keepData = opts.keepData ?? true;
  let nextSession = 1;
  let nextMessage = 1;
  let open = 0;

  /**
   * A session stops counting as a real MTA frees its slot: when smtp-server has said goodbye (its
   * close(), after a 221 or 421) or the client has hung up (its FIN), whichever comes first.
   */
  const finish = (l: Live) => {
    if (l.counted) return;
    l.counted = true;
    open -= 1;
  };
  const kill = (l: Live) => {
    l.killed = true;
    l.session.closedBy ??= 'server';
    finish(l);
    for (const s of l.sockets) s.destroy();
  };
  const byCid = (s: SMTPServerSession): Live => {
    const l = live.get(s.id);
    if (!l) throw new TestkitError('TESTKIT_OPTION', `capture backend: no record of session ${s.id}`);
    return l;
  };

  /** XCLIENT attributes and the client smtp-server sees, from its connection after each reply. */
  const updateClient = (l: Live) => {
    const conn = l.conn;
    if (!conn) return;
    for (const [k, v] of conn._xClient)
      if (!k.includes(':')) l.session.xclient[k] = v === false ? false : String(v);
    l.session.client = { address: conn.remoteAddress, port: conn.remotePort };
  };

  /** Records what is read from and written to `socket` (the accepted one, then the TLS one). */
  const tap = (l: Live, socket: net.Socket) => {
    l.sockets.push(socket);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => {
      if (keepData || !l.inData) l.session.raw.push(chunk);
    });
    socket.on('end', () => {
      l.session.closedBy ??= 'client';
      finish(l);
    });
    socket.on('close', () => finish(l));
    const end = socket.end.bind(socket) as (...args: unknown[]) => net.Socket;
    socket.end = ((...args: unknown[]) => {
      l.session.closedBy ??= 'server';
      return end(...args);
    }) as typeof socket.end;
    const write = socket.write.bind(socket) as (chunk: unknown, ...rest: unknown[]) => boolean;
    socket.write = ((chunk: unknown, ...rest: unknown[]) => {
      l.session.replies.push(Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk));
      const flushed = write(chunk, ...rest);
      updateClient(l);
      return flushed;
    }) as typeof socket.write;
  };

  /** The parser reads the command lines; the TLS session after STARTTLS gets a new parser. */
  const watchParser = (l: Live, parser: ConnectionInternals['_parser']) => {
    const oncommand = parser.oncommand.bind(parser);
    parser.oncommand = (command, callback) => {
      const line = command.toString('utf8');
      l.session.lines.push(line);
      const m = /^(EHLO|HELO)\s+(\S+)\s*$/i.exec(line);
      if (m) l.session.ehlo.push(m[2]!);
      oncommand(command, callback);
    };
  };

  const answer = (
    l: Live,
    verb: 'MAIL' | 'RCPT',
    address: SMTPServerAddress,
    callback: (err?: Error | null) => void,
    after?: () => void,
  ) => {
    const command = l.session.lines.at(-1) ?? '';
    const sp = command.indexOf(' ');
    const scripted = opts.reply?.({
      command,
      verb,
      arg: sp < 0 ? '' : command.slice(sp + 1),
      address: address.address,
      session: l.session,
    });
    if (scripted === null) return;
    if (scripted === undefined) {
      callback();
      after?.();
      return;
    }
    callback(refusal(scripted, `${verb} reply`));
  };

  const onData = (
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    done: (err?: Error | null, message?: string) => void,
  ) => {
    const l = byCid(session);
    l.inData = true;
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    let size = 0;
    stream.on('data', (c: Buffer) => {
      if (opts.kill === 'mid-data') {
        kill(l);
        return;
      }
      size += c.length;
      hash.update(c);
      if (keepData) chunks.push(c);
    });
    stream.on('error', () => {});
    stream.on('end', () => {
      l.inData = false;
      if (l.killed) return;
      if (opts.kill === 'mid-data') {
        kill(l);
        return;
      }
      const envelope = session.envelope;
      const from = envelope.mailFrom || undefined;
      const msg: CapturedMessage = {
        id: nextMessage++,
        sessionId: l.session.id,
        mailFrom: from ? from.address : '',
        mailParams: from ? formatArgs(from.args) : '',
        rcptTo: envelope.rcptTo.map((r) => r.address),
        data: Buffer.concat(chunks),
        size,
        sha256: hash.digest('hex'),
        client: {
          address: session.remoteAddress,
          port: session.remotePort,
          helo: session.hostNameAppearsAs,
        },
      };
      backend.messages.push(msg);
      for (const wake of waiters) wake();
      if (opts.kill === 'after-dot') {
        kill(l);
        return;
      }
      // The reply is written within done(), and what the client pipelined behind the dot may be
      // answered within it too: the data reply is the first one after this.
      const before = l.session.replies.length;
      if (stream.sizeExceeded) {
        // rejectOversized: smtp-server answers 552 itself, whatever onData says.
        done(null);
      } else {
        const scripted = opts.dataReply?.(msg);
        if (scripted === null) return;
        if (scripted === undefined) done(null, `Ok: queued as ${msg.id}`);
        else if (/^2\d\d /.test(scripted)) done(null, scripted.slice(4).replace(ENHANCED, ''));
        else done(refusal(scripted, 'dataReply'));
      }
      msg.reply = l.session.replies[before]?.replace(/\r\n$/, '');
    });
  };

  const newSession = (cid: string, socket: net.Socket): Live => {
    const raw: Buffer[] = [];
    const session: CapturedSession = {
      id: nextSession++,
      cid,
      remotePort: socket.remotePort ?? 0,
      lines: [],
      raw,
      replies: [],
      xclient: {},
      client: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      ehlo: [],
      tls: false,
      bytes: () => Buffer.concat(raw),
    };
    backend.sessions.push(session);
    const l: Live = { session, sockets: [], rcptSeen: false, killed: false, inData: false, counted: false };
    live.set(cid, l);
    return l;
  };

  const serverOptions: SMTPServerOptions = {
    name: opts.hostname ?? 'capture.test',
    banner: '',
    heloResponse: '%s',
    logger: false,
    disableReverseLookup: true,
    disabledCommands: opts.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
    hideENHANCEDSTATUSCODES: hide.has('ENHANCEDSTATUSCODES'),
    hidePIPELINING: hide.has('PIPELINING'),
    hide8BITMIME: hide.has('8BITMIME'),
    hideSMTPUTF8: hide.has('SMTPUTF8'),
    hideDSN: !opts.dsn,
    useXClient: !hide.has('XCLIENT'),
    useProxy: opts.expectProxyHeader ?? false,
    size: opts.size ?? DEFAULT_SIZE,
    hideSize: hide.has('SIZE'),
    rejectOversized: true,
    closeTimeout: 1000,
    onConnect(session, callback) {
      const l = byCid(session);
      if (opts.kill === 'before-greeting') {
        kill(l);
        return;
      }
      const delay = opts.greetingDelayMs ?? 0;
      if (delay > 0) setTimeout(() => callback(), delay);
      else callback();
    },
    onSecure(socket, session, callback) {
      const l = byCid(session);
      l.session.tls = true;
      tap(l, socket as net.Socket);
      callback();
    },
    onMailFrom(address, session, callback) {
      answer(byCid(session), 'MAIL', address, callback);
    },
    onRcptTo(address, session, callback) {
      const l = byCid(session);
      answer(l, 'RCPT', address, callback, () => {
        if (opts.kill === 'after-rcpt' && !l.rcptSeen) {
          l.rcptSeen = true;
          kill(l);
        }
      });
    },
    onData,
    onClose(session) {
      const l = live.get(session.id);
      if (!l) return;
      updateClient(l);
      live.delete(session.id);
    },
  };

  class RecordingServer extends SMTPServer {
    override connect(socket: net.Socket, socketOptions?: { id?: string } | null): void {
      const cid = socketOptions?.id ?? '';
      const l = newSession(cid, socket);
      open += 1;
      backend.maxConcurrent = Math.max(backend.maxConcurrent, open);
      const header = headers.get(socket);
      if (header) {
        // The reader of the PROXY header is done with the socket: give it its own methods back.
        Reflect.deleteProperty(socket, 'read');
        Reflect.deleteProperty(socket, 'unshift');
        const all = Buffer.concat(header.chunks);
        l.session.proxyHeader = all.subarray(0, all.length - header.unshifted);
      }
      tap(l, socket);
      super.connect(socket, socketOptions as never);
      const conn = [...(this.connections as unknown as Set<ConnectionInternals>)].find((c) => c.id === cid);
      if (!conn || typeof conn._createParser !== 'function' || !conn._parser) {
        throw new TestkitError(
          'TESTKIT_OPTION',
          `capture backend: smtp-server ${smtpServerVersion} has no SMTPConnection._parser to watch`,
        );
      }
      l.conn = conn;
      const close = conn.close.bind(conn);
      conn.close = () => {
        finish(l);
        close();
      };
      watchParser(l, conn._parser);
      const create = conn._createParser.bind(conn);
      conn._createParser = () => {
        const parser = create();
        watchParser(l, parser);
        return parser;
      };
    }
  }

  const server = new RecordingServer(serverOptions);
  server.on('error', () => {});
  if (opts.expectProxyHeader) {
    // Runs before smtp-server's own listener: note what its PROXY reader takes off the socket.
    server.server.prependListener('connection', (socket: net.Socket) => {
      const header = { chunks: [] as Buffer[], unshifted: 0 };
      headers.set(socket, header);
      const read = socket.read.bind(socket);
      const unshift = socket.unshift.bind(socket);
      socket.read = ((n?: number) => {
        const chunk = read(n) as Buffer | null;
        if (chunk) header.chunks.push(chunk);
        return chunk;
      }) as typeof socket.read;
      socket.unshift = ((chunk: Buffer, encoding?: BufferEncoding) => {
        header.unshifted += chunk.length;
        unshift(chunk, encoding);
      }) as typeof socket.unshift;
    });
  }

  const backend: CaptureBackend = {
    host: opts.host ?? '127.0.0.1',
    port: 0,
    address: '',
    sessions: [],
    messages: [],
    get current() {
      return open;
    },
    maxConcurrent: 0,
    waitForMessages(n, timeoutMs = 10_000) {
      if (backend.messages.length >= n) return Promise.resolve(backend.messages.slice(0, n));
      return new Promise((resolve, reject) => {
        const wake = () => {
          if (backend.messages.length < n) return;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve(backend.messages.slice(0, n));
        };
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(`capture backend: ${backend.messages.length} of ${n} messages within ${timeoutMs} ms`),
          );
        }, timeoutMs);
        waiters.add(wake);
      });
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.server.address() as net.AddressInfo;
  backend.port = address.port;
  backend.address = `${backend.host}:${backend.port}`;
  return backend;
}

/** `'550 5.1.1 no such user'` → an error smtp-server answers with `550 <its enhanced code> no such user`. */
function refusal(scripted: string, what: string): Error {
  const m = /^([45]\d\d) ([^\r\n]*)$/.exec(scripted);
  const err = new Error() as Error & { responseCode: number };
  if (!m) {
    // A test's mistake, said where it shows: in the test's output and in the reply.
    const problem = `capture backend: ${what} ${JSON.stringify(scripted)} is not one 4xx/5xx line (smtp-server writes its own successes; odd replies: startWireBackend)`;
    console.error(problem);
    err.message = problem;
    err.responseCode = 451;
    return err;
  }
  err.message = m[2]!.replace(ENHANCED, '');
  err.responseCode = Number(m[1]);
  return err;
}

function formatArgs(args: unknown): string {
  if (!args || typeof args !== 'object') return '';
  return Object.entries(args as Record<string, string | boolean>)
    .map(([k, v]) => (v === true ? k : `${k}=${v}`))
    .join(' ');
}
