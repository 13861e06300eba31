// The wire-level recorder: our own byte-level SMTP server, for what no real server does or shows. It
// keeps every byte and line with the replies written before it, the dot-stuffed DATA as received, and
// plays a lax or hostile backend on request: any reply text to any command (multi-line, malformed, a
// 354 to RCPT), EHLO capabilities of a test's choosing, PROXY v2, replies pipelined mid-DATA. It is our
// own reading of the RFCs, so it is not the oracle: `startCaptureBackend` (smtp-server) is.
import { createHash, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';

export type WireKillPoint = 'before-greeting' | 'after-rcpt' | 'mid-data' | 'after-dot';

export interface WireReplyContext {
  /** The command line without its terminator. */
  command: string;
  /** Upper-cased first word. */
  verb: string;
  /** Everything after the first space. */
  arg: string;
  session: WireSession;
}

export interface WireBackendOptions {
  /** Port; default 0 (a free one). */
  port?: number;
  /** Address to listen on; default 127.0.0.1 (another 127.0.0.x stands for another host). */
  host?: string;
  /** Default `220 capture.test ESMTP`. */
  greeting?: string;
  /** Name in the first EHLO line and in HELO replies. Default `capture.test`. */
  hostname?: string;
  /** EHLO lines after the hostname. */
  capabilities?: string[];
  /** Offers STARTTLS (until the session is secure) when set. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Read a PROXY v1/v2 header before greeting and record it in `session.proxyHeader`. */
  expectProxyHeader?: boolean;
  /**
   * Full reply text (may be multi-line, lines joined by CRLF) instead of the default, or undefined. An
   * override has the default's effect (a transaction starts, DATA begins...) only when the default
   * would have succeeded and the override is positive too (2xx; 354 to DATA; 220 to STARTTLS/XCLIENT).
   * `null` sends no reply at all and changes nothing: the backend seems hung (for timeout tests).
   */
  reply?: (ctx: WireReplyContext) => string | null | undefined;
  /** Reply after the final dot instead of `250 2.0.0 Ok: queued as <n>`; `null` never replies. */
  dataReply?: (msg: WireMessage) => string | null | undefined;
  /**
   * Destroy the socket at that point: before-greeting (instead of the greeting), after-rcpt (right after
   * the reply to the first RCPT of a session, ignoring anything pipelined behind it), mid-data (on the
   * first content byte), after-dot (final dot received, the message is recorded, no reply).
   */
  kill?: WireKillPoint;
  greetingDelayMs?: number;
  /**
   * Default true. When false, DATA content is not retained (message `raw`/`data` are empty and reads
   * that arrive during DATA are left out of `session.raw`); `size`, `rawSize` and `sha256` are still
   * exact. For tests that stream messages larger than the memory they may use.
   */
  keepData?: boolean;
}

export interface WireSession {
  id: number;
  remotePort: number;
  /**
   * Every command line as received, without its CRLF. A line ended by a bare LF keeps that `\n`, so a
   * test can tell it from a CRLF-terminated one.
   */
  lines: string[];
  /** For each entry of `lines`: how many replies this server had written when the line's first byte arrived. */
  repliesBefore: number[];
  /** Every chunk read from the socket, in order (decrypted after STARTTLS). */
  raw: Buffer[];
  /** Bytes after the last LF when the connection closed: a command never terminated. */
  trailing?: Buffer;
  proxyHeader?: Buffer;
  /** XCLIENT attributes accepted so far, xtext-decoded; later commands override earlier ones. */
  xclient: Record<string, string>;
  /** Names given to EHLO or HELO, in order. */
  ehlo: string[];
  tls: boolean;
  closedBy?: 'client' | 'server';
  /** Concatenation of `raw`. */
  bytes(): Buffer;
}

export interface WireMessage {
  id: number;
  sessionId: number;
  mailFrom: string;
  mailParams: string;
  /** Recipients this server accepted (2xx) in the transaction. */
  rcptTo: string[];
  /** Bytes exactly as received between 354 and the final `.\r\n`: still dot-stuffed, ends with the CRLF before the dot. */
  raw: Buffer;
  /** Content with the dot-stuffing removed. */
  data: Buffer;
  /** Length of `raw` and `data` (exact even when keepData is false). */
  rawSize: number;
  size: number;
  /** Hex SHA-256 of `data`. */
  sha256: string;
  /** True when content bytes arrived in the same read as the DATA command, before the 354 was sent. */
  earlyData: boolean;
  /** The reply sent after the final dot; undefined when killed after the dot or dataReply gave null. */
  reply?: string;
}

export interface WireBackend {
  host: string;
  port: number;
  /** `host:port` */
  address: string;
  sessions: WireSession[];
  messages: WireMessage[];
  /** Connections open now, and the highest number seen at once. */
  current: number;
  maxConcurrent: number;
  waitForMessages(n: number, timeoutMs?: number): Promise<WireMessage[]>;
  close(): Promise<void>;
}

export const defaultWireCapabilities: readonly string[] = [
  'PIPELINING',
  '8BITMIME',
  'SMTPUTF8',
  'SIZE 104857600',
  'ENHANCEDSTATUSCODES',
  'XCLIENT ADDR PORT PROTO HELO NAME LOGIN DESTADDR DESTPORT',
];

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);
const PROXY_V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');

export async function startWireBackend(opts: WireBackendOptions = {}): Promise<WireBackend> {
  const events = new EventEmitter();
  const secureContext = opts.tls
    ? tls.createSecureContext({ key: opts.tls.key, cert: opts.tls.cert })
    : undefined;
  const sockets = new Set<net.Socket>();
  let nextSession = 1;
  let nextMessage = 1;

  const backend: WireBackend = {
    host: opts.host ?? '127.0.0.1',
    port: 0,
    address: '',
    sessions: [],
    messages: [],
    current: 0,
    maxConcurrent: 0,
    waitForMessages(n, timeoutMs = 10_000) {
      if (backend.messages.length >= n) return Promise.resolve(backend.messages.slice(0, n));
      return new Promise((resolve, reject) => {
        const onMessage = () => {
          if (backend.messages.length < n) return;
          clearTimeout(timer);
          events.off('message', onMessage);
          resolve(backend.messages.slice(0, n));
        };
        const timer = setTimeout(() => {
          events.off('message', onMessage);
          reject(
            new Error(`wire backend: ${backend.messages.length} of ${n} messages within ${timeoutMs} ms`),
          );
        }, timeoutMs);
        events.on('message', onMessage);
      });
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    backend.current += 1;
    backend.maxConcurrent = Math.max(backend.maxConcurrent, backend.current);
    const session = newSession(nextSession++, socket.remotePort ?? 0);
    backend.sessions.push(session);
    new WireConnection(socket, session, opts, secureContext, {
      record(draft) {
        const msg: WireMessage = { ...draft, id: nextMessage++, sessionId: session.id };
        backend.messages.push(msg);
        events.emit('message');
        return msg;
      },
      closed() {
        sockets.delete(socket);
        backend.current -= 1;
      },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  backend.port = (server.address() as net.AddressInfo).port;
  backend.address = `${backend.host}:${backend.port}`;
  return backend;
}

function newSession(id: number, remotePort: number): WireSession {
  const raw: Buffer[] = [];
  return {
    id,
    remotePort,
    lines: [],
    repliesBefore: [],
    raw,
    xclient: {},
    ehlo: [],
    tls: false,
    bytes: () => Buffer.concat(raw),
  };
}

type MessageDraft = Omit<WireMessage, 'id' | 'sessionId'>;

interface DataState {
  carry: Buffer;
  lineStart: boolean;
  rawChunks: Buffer[];
  rawLen: number;
  dataChunks: Buffer[];
  size: number;
  hash: Hash;
  early: boolean;
}

/** One client connection: a byte-level state machine over proxy header, commands and DATA. */
class WireConnection {
  private state: 'proxy' | 'command' | 'data' | 'tls' | 'dead' = 'command';
  private greeted = false;
  private buf: Buffer = EMPTY;
  private bufRepliesAtStart = 0;
  private chunkReplies = 0;
  private replies = 0;
  private helo = false;
  private mail?: { from: string; params: string };
  private rcpts: string[] = [];
  private rcptSeen = false;
  private data?: DataState;
  private readonly keepData: boolean;
  private isClosed = false;
  private counted = false;

  constructor(
    private socket: net.Socket,
    private readonly session: WireSession,
    private readonly opts: WireBackendOptions,
    private readonly secureContext: tls.SecureContext | undefined,
    private readonly hooks: { record(m: MessageDraft): WireMessage; closed(): void },
  ) {
    this.keepData = opts.keepData ?? true;
    socket.on('data', (chunk: Buffer) => this.feed(chunk));
    this.watch(socket);
    if (opts.expectProxyHeader) this.state = 'proxy';
    else this.scheduleGreeting();
  }

  /** Both the plain socket and, after STARTTLS, the TLS socket report the end; count it once. */
  private watch(socket: net.Socket): void {
    socket.on('end', () => {
      this.session.closedBy ??= 'client';
      this.finish();
    });
    socket.on('error', () => {
      this.session.closedBy ??= 'client';
    });
    socket.on('close', () => {
      if (this.isClosed) return;
      this.isClosed = true;
      this.state = 'dead';
      if (this.buf.length > 0) this.session.trailing = this.buf;
      this.finish();
    });
  }

  /**
   * The connection stops counting towards `current` as a real MTA frees its slot: when it has said
   * goodbye (221) or the client has hung up, whichever comes first, not when the last FIN is seen.
   */
  private finish(): void {
    if (this.counted) return;
    this.counted = true;
    this.hooks.closed();
  }

  private scheduleGreeting(): void {
    const delay = this.opts.greetingDelayMs ?? 0;
    if (delay > 0) setTimeout(() => this.greet(), delay);
    else this.greet();
  }

  private greet(): void {
    if (this.state === 'dead') return;
    if (this.opts.kill === 'before-greeting') {
      this.kill();
      return;
    }
    this.send(this.opts.greeting ?? '220 capture.test ESMTP');
    this.greeted = true;
    // Lines that arrived before the greeting (early talkers) are answered now, in order.
    if (this.buf.length > 0) this.run(EMPTY);
  }

  private kill(): void {
    this.session.closedBy ??= 'server';
    this.state = 'dead';
    this.socket.destroy();
  }

  private send(text: string): void {
    let out = text.replace(/\r?\n/g, '\r\n');
    if (!out.endsWith('\r\n')) out += '\r\n';
    this.replies += 1;
    this.socket.write(out);
  }

  private feed(chunk: Buffer): void {
    if (this.keepData || this.state !== 'data') this.session.raw.push(chunk);
    this.chunkReplies = this.replies;
    if (this.buf.length === 0) this.bufRepliesAtStart = this.chunkReplies;
    this.run(chunk);
  }

  /** Hands the bytes to the phase that owns them; a phase returns what belongs to the next one. */
  private run(chunk: Buffer): void {
    let rest = chunk;
    for (;;) {
      if (this.state === 'proxy') rest = this.feedProxy(rest);
      else if (this.state === 'data') rest = this.feedData(rest);
      else if (this.state === 'command') rest = this.feedCommands(rest);
      else return;
      if (rest.length === 0) return;
    }
  }

  /** Returns the bytes after the header (once complete), or EMPTY while it is incomplete. */
  private feedProxy(chunk: Buffer): Buffer {
    this.buf = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    const b = this.buf;
    let end = -1;
    if (b.length > 0 && b[0] === PROXY_V2_SIGNATURE[0]) {
      const sigLen = Math.min(b.length, PROXY_V2_SIGNATURE.length);
      if (!b.subarray(0, sigLen).equals(PROXY_V2_SIGNATURE.subarray(0, sigLen))) return this.badProxy();
      if (b.length >= 16) end = 16 + b.readUInt16BE(14);
      if (end > b.length) end = -1;
    } else {
      const lf = b.indexOf(LF);
      if (lf >= 0) end = lf + 1;
      else if (b.length > 107) return this.badProxy();
      if (end > 0 && (!b.subarray(0, 6).equals(Buffer.from('PROXY ')) || b[end - 2] !== CR))
        return this.badProxy();
    }
    if (end < 0) return EMPTY;
    this.session.proxyHeader = b.subarray(0, end);
    const rest = b.subarray(end);
    this.buf = EMPTY;
    this.state = 'command';
    this.bufRepliesAtStart = this.chunkReplies;
    this.scheduleGreeting();
    return rest;
  }

  private badProxy(): Buffer {
    this.session.proxyHeader = this.buf;
    this.buf = EMPTY;
    this.kill();
    return EMPTY;
  }

  /** Consumes complete lines; returns what follows a DATA line that got 354 (content), else EMPTY. */
  private feedCommands(chunk: Buffer): Buffer {
    this.buf = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.greeted) return EMPTY;
    while (this.state === 'command') {
      const lf = this.buf.indexOf(LF);
      if (lf < 0) break;
      const crlf = lf > 0 && this.buf[lf - 1] === CR;
      const text = this.buf.toString('utf8', 0, crlf ? lf - 1 : lf);
      this.session.lines.push(crlf ? text : `${text}\n`);
      this.session.repliesBefore.push(this.bufRepliesAtStart);
      this.buf = this.buf.subarray(lf + 1);
      this.bufRepliesAtStart = this.chunkReplies;
      this.command(text);
    }
    if (this.state === 'data') {
      const rest = this.buf;
      this.buf = EMPTY;
      if (this.data && rest.length > 0) this.data.early = true;
      return rest;
    }
    // RFC 3207 4.2: a server discards what the client pipelined behind STARTTLS.
    if (this.state === 'tls' || this.state === 'dead') this.buf = EMPTY;
    return EMPTY;
  }

  private command(line: string): void {
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1);
    const plan = this.plan(verb, arg);
    const custom = this.opts.reply?.({ command: line, verb, arg, session: this.session });
    if (custom === null) return;
    const reply = custom ?? plan.reply;
    const positive = plan.ok && (custom === undefined || isPositive(verb, custom));
    this.send(reply);
    if (positive) plan.apply();
    if (verb === 'RCPT' && this.opts.kill === 'after-rcpt' && !this.rcptSeen) {
      this.rcptSeen = true;
      this.kill();
    }
  }

  /** The default reply to a command, whether it is a success, and what a success changes. */
  private plan(verb: string, arg: string): { reply: string; ok: boolean; apply: () => void } {
    const noop = () => {};
    const fail = (reply: string) => ({ reply, ok: false, apply: noop });
    const host = this.opts.hostname ?? 'capture.test';
    switch (verb) {
      case 'EHLO':
      case 'HELO': {
        const name = arg.trim();
        const apply = () => {
          this.resetTransaction();
          this.helo = true;
          this.session.ehlo.push(name);
        };
        if (name === '') return fail(`501 5.5.4 Syntax: ${verb} hostname`);
        if (verb === 'HELO') return { reply: `250 ${host}`, ok: true, apply };
        const caps = [...(this.opts.capabilities ?? defaultWireCapabilities)];
        if (this.secureContext && !this.session.tls) caps.push('STARTTLS');
        const lines = [host, ...caps];
        const reply = lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}`).join('\r\n');
        return { reply, ok: true, apply };
      }
      case 'XCLIENT': {
        const offered = (this.opts.capabilities ?? defaultWireCapabilities).find((c) =>
          /^XCLIENT(\s|$)/i.test(c),
        );
        if (!offered) return fail('502 5.5.2 Error: command not recognized');
        if (this.mail) return fail('503 5.5.1 Error: MAIL transaction in progress');
        const attrs = parseXclient(arg);
        if (!attrs) return fail('501 5.5.4 Syntax: XCLIENT attribute=value...');
        const allowed = new Set(offered.toUpperCase().split(/\s+/).slice(1));
        const unknown = Object.keys(attrs).find((k) => !allowed.has(k));
        if (unknown) return fail(`501 5.5.4 Bad XCLIENT attribute name: ${unknown}`);
        return {
          reply: this.opts.greeting ?? '220 capture.test ESMTP',
          ok: true,
          apply: () => {
            Object.assign(this.session.xclient, attrs);
            this.resetTransaction();
            this.helo = false;
          },
        };
      }
      case 'STARTTLS':
        if (!this.secureContext || this.session.tls) return fail('502 5.5.2 Error: command not recognized');
        if (arg !== '') return fail('501 5.5.4 Syntax: STARTTLS');
        return { reply: '220 2.0.0 Ready to start TLS', ok: true, apply: () => this.upgrade() };
      case 'MAIL': {
        const path = parsePath(arg, 'FROM:');
        const apply = () => {
          this.rcpts = [];
          this.mail = { from: path?.address ?? '', params: path?.params ?? '' };
        };
        if (!this.helo) return fail('503 5.5.1 Error: send HELO/EHLO first');
        if (this.mail) return fail('503 5.5.1 Error: nested MAIL command');
        if (!path) return fail('501 5.5.4 Syntax: MAIL FROM:<address>');
        return { reply: '250 2.1.0 Ok', ok: true, apply };
      }
      case 'RCPT': {
        const path = parsePath(arg, 'TO:');
        const apply = () => this.rcpts.push(path?.address ?? '');
        if (!this.mail) return fail('503 5.5.1 Error: need MAIL command');
        if (!path || path.address === '') return fail('501 5.5.4 Syntax: RCPT TO:<address>');
        return { reply: '250 2.1.5 Ok', ok: true, apply };
      }
      case 'DATA': {
        const apply = () => this.startData();
        if (!this.mail) return fail('503 5.5.1 Error: need MAIL command');
        if (this.rcpts.length === 0) return fail('554 5.5.1 Error: no valid recipients');
        if (arg !== '') return fail('501 5.5.4 Syntax: DATA');
        return { reply: '354 End data with <CR><LF>.<CR><LF>', ok: true, apply };
      }
      case 'RSET':
        return { reply: '250 2.0.0 Ok', ok: true, apply: () => this.resetTransaction() };
      case 'NOOP':
        return { reply: '250 2.0.0 Ok', ok: true, apply: noop };
      case 'QUIT':
        return {
          reply: '221 2.0.0 Bye',
          ok: true,
          apply: () => {
            this.session.closedBy ??= 'server';
            this.state = 'dead';
            this.socket.end();
            this.finish();
          },
        };
      default:
        return fail('502 5.5.2 Error: command not recognized');
    }
  }

  private resetTransaction(): void {
    this.mail = undefined;
    this.rcpts = [];
  }

  private upgrade(): void {
    const plain = this.socket;
    plain.removeAllListeners('data');
    this.state = 'tls';
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: this.secureContext });
    secure.on('secure', () => {
      this.session.tls = true;
      this.resetTransaction();
      this.helo = false;
      this.state = 'command';
    });
    secure.on('data', (chunk: Buffer) => this.feed(chunk));
    secure.on('error', () => plain.destroy());
    this.watch(secure);
    this.socket = secure;
  }

  private startData(): void {
    this.state = 'data';
    this.data = {
      carry: EMPTY,
      lineStart: true,
      rawChunks: [],
      rawLen: 0,
      dataChunks: [],
      size: 0,
      hash: createHash('sha256'),
      early: false,
    };
  }

  /**
   * RFC 5321 4.1.1.4 / 4.5.2: content ends only at CRLF "." CRLF (the start of DATA counts as a line
   * start); a leading dot of any other line is removed. `carry` holds the at most two undecided bytes
   * (`\r` mid-line, or `.`/`.\r` at a line start) between reads. Returns the bytes after the end.
   */
  private feedData(chunk: Buffer): Buffer {
    const d = this.data!;
    if (chunk.length === 0) return EMPTY;
    if (this.opts.kill === 'mid-data') {
      this.kill();
      return EMPTY;
    }
    const carryLen = d.carry.length;
    const rawBefore = d.rawLen;
    if (this.keepData) d.rawChunks.push(chunk);
    d.rawLen += chunk.length;
    const buf = carryLen > 0 ? Buffer.concat([d.carry, chunk]) : chunk;
    const len = buf.length;
    let i = 0;
    for (;;) {
      if (d.lineStart) {
        if (i >= len) {
          d.carry = EMPTY;
          return EMPTY;
        }
        if (buf[i] === DOT) {
          if (i + 2 >= len && (i + 1 >= len || buf[i + 1] === CR)) {
            d.carry = buf.subarray(i);
            return EMPTY;
          }
          if (buf[i + 1] === CR && buf[i + 2] === LF) {
            this.endData(rawBefore + i - carryLen);
            return buf.subarray(i + 3);
          }
          i += 1;
        }
        d.lineStart = false;
      }
      const j = buf.indexOf(CRLF, i);
      if (j < 0) {
        const end = buf[len - 1] === CR ? len - 1 : len;
        this.emitData(buf.subarray(i, end));
        d.carry = buf.subarray(end);
        return EMPTY;
      }
      this.emitData(buf.subarray(i, j + 2));
      i = j + 2;
      d.lineStart = true;
    }
  }

  private emitData(piece: Buffer): void {
    const d = this.data!;
    if (piece.length === 0) return;
    d.size += piece.length;
    d.hash.update(piece);
    if (this.keepData) d.dataChunks.push(piece);
  }

  private endData(rawSize: number): void {
    const d = this.data!;
    this.data = undefined;
    this.state = 'command';
    const draft: MessageDraft = {
      mailFrom: this.mail?.from ?? '',
      mailParams: this.mail?.params ?? '',
      rcptTo: [...this.rcpts],
      raw: this.keepData ? Buffer.concat(d.rawChunks).subarray(0, rawSize) : EMPTY,
      data: this.keepData ? Buffer.concat(d.dataChunks) : EMPTY,
      rawSize,
      size: d.size,
      sha256: d.hash.digest('hex'),
      earlyData: d.early,
    };
    this.resetTransaction();
    const msg = this.hooks.record(draft);
    if (this.opts.kill === 'after-dot') {
      this.kill();
      return;
    }
    const reply = this.opts.dataReply?.(msg);
    if (reply === null) return;
    msg.reply = reply ?? `250 2.0.0 Ok: queued as ${msg.id}`;
    this.send(msg.reply);
  }
}

function isPositive(verb: string, reply: string): boolean {
  if (verb === 'DATA') return reply.startsWith('354');
  if (verb === 'STARTTLS' || verb === 'XCLIENT') return reply.startsWith('220');
  return reply.startsWith('2');
}

/** `FROM:<a@b> PARAMS` → address and params; undefined when malformed. */
function parsePath(arg: string, prefix: string): { address: string; params: string } | undefined {
  if (arg.slice(0, prefix.length).toUpperCase() !== prefix) return undefined;
  const m = /^\s*<([^>]*)>\s*(.*)$/.exec(arg.slice(prefix.length));
  return m ? { address: m[1]!, params: m[2]! } : undefined;
}

/** `NAME=xtext ...` → decoded attributes (RFC 3461 xtext: `+HH` is one byte). */
function parseXclient(arg: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const words = arg.split(' ').filter((w) => w !== '');
  if (words.length === 0) return undefined;
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) return undefined;
    const value = w.slice(eq + 1);
    if (/\+(?![0-9A-F]{2})/.test(value)) return undefined;
    const bytes = Buffer.from(
      value.replace(/\+([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))),
      'latin1',
    );
    out[w.slice(0, eq).toUpperCase()] = bytes.toString('utf8');
  }
  return out;
}
