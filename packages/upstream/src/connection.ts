// One SMTP client connection to a backend MTA, driven by one proxied client session: TCP connect,
// optional PROXY header, greeting, EHLO (HELO fallback), STARTTLS, XCLIENT, then pipelined envelopes,
// streamed DATA, RSET and QUIT. Every wait has a deadline and every failure is one UpstreamError; a
// connection that failed is destroyed, never reused.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { DataEncoder, MAX_CONTENT_LINE } from './data-encoder.js';
import { UpstreamError } from './errors.js';
import { proxyHeader } from './proxy-header.js';
import { ReplyParser } from './reply-parser.js';
import type {
  AbortReason,
  ClientIdentity,
  DataOptions,
  MailCommand,
  Reply,
  Stage,
  UpstreamConnection,
  UpstreamOptions,
} from './types.js';
import { xclientCommands } from './xclient.js';

/** QUIT is a courtesy: wait this long at most for the 221. */
const QUIT_WAIT_MS = 2000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A settled-once operation: one promise for all the commands of one call. */
class Op<T> {
  settled = false;
  resolve!: (value: T) => void;
  reject!: (err: Error) => void;
  readonly promise: Promise<T>;
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

/** One command of establishment (kind request) or RSET (checked, exclusive). */
class Request extends Op<Reply> {
  constructor(readonly kind: 'request' | 'rset') {
    super();
  }
}

class QuitOp extends Op<void> {
  readonly kind = 'quit';
}

type EnvelopeResult = { mail?: Reply; rcpts: Reply[] };

/** MAIL and RCPTs: sent in one write (pipelined) or each after the previous reply. */
class EnvelopeOp extends Op<EnvelopeResult> {
  readonly kind = 'envelope';
  readonly replies: Reply[] = [];
  constructor(
    readonly commands: Waiter[],
    readonly hasMail: boolean,
    readonly pipelined: boolean,
  ) {
    super();
  }
}

/** DATA, then (after the 354) the content and the final dot, whose waiter is `final`. */
class DataOp extends Op<Reply> {
  readonly kind = 'data';
  final?: Waiter;
  socket?: net.Socket;
  readonly encoder: DataEncoder;
  dotSent = false;
  /** Our final dot left for the backend (handed to the kernel): only now may the backend answer. */
  dotFlushed = false;
  draining = false;
  blockTimer?: NodeJS.Timeout;
  constructor(
    readonly body: Readable,
    readonly opts: DataOptions,
  ) {
    super();
    this.encoder = new DataEncoder(opts);
  }
}

type AnyOp = Request | QuitOp | EnvelopeOp | DataOp;

/** One command waiting for its reply. */
class Waiter {
  /** performance.now() by which the reply must be in; Infinity while not armed. */
  deadline = Number.POSITIVE_INFINITY;
  ms = 0;
  /** RFC 3207 4.2: after this reply (220 to STARTTLS) nothing more is read in plaintext. */
  lastPlaintext = false;
  constructor(
    public stage: Stage,
    public command: string,
    readonly op: AnyOp,
  ) {}
}

/** A connect or TLS handshake in progress: failed like a waiter, but answered by the socket. */
interface PendingOp {
  stage: Stage;
  command: string;
  reject(err: UpstreamError): void;
}

type ErrorFor = (w: { stage: Stage; command: string }) => UpstreamError;

const aborted: ErrorFor = (w) =>
  new UpstreamError('EABORTED', w.stage, 'connection attempt aborted by the caller', {
    abortReason: 'caller',
    command: w.command,
  });
const afterQuit: ErrorFor = (w) =>
  new UpstreamError('ECLOSED', w.stage, 'connection closed after QUIT', { command: w.command });
const destroyed: ErrorFor = (w) =>
  new UpstreamError('EABORTED', w.stage, 'connection destroyed by the caller', {
    abortReason: 'caller',
    command: w.command,
  });

/**
 * Connects and prepares a backend connection for a client session. Rejects with an UpstreamError
 * (ECONNECT, EGREETING, EEHLO, ETLS, EXCLIENT, ETIMEOUT, ECLOSED, EPROTOCOL; EABORTED 'caller' when
 * `signal` aborts). The signal covers establishment only; afterwards use destroy() or quit().
 */
export function connectUpstream(
  opts: UpstreamOptions,
  identity: ClientIdentity,
  signal?: AbortSignal,
): Promise<UpstreamConnection> {
  try {
    const conn = new SmtpUpstreamConnection(opts);
    return conn.establish(identity, signal).then(() => conn);
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * The per-message path is CPU-bound, so it is written for few allocations: one promise per call
 * (not per command), one reply timer per connection, replies handed on synchronously, the DATA
 * listeners made once per connection, and no error built that nobody will see.
 */
export class SmtpUpstreamConnection extends EventEmitter implements UpstreamConnection {
  private readonly opts: UpstreamOptions;
  private socket!: net.Socket;
  private readonly parser = new ReplyParser();
  private waiters: Waiter[] = [];
  private pending?: PendingOp;
  /** Set once by the first failure (ours or the peer's); from then on the socket is being torn down. */
  private failed = false;
  private gone = false;
  private socketError?: Error;
  /** Between the 220 to STARTTLS and the handshake: plaintext from the backend is discarded. */
  private upgrading = false;
  private busy?: string;
  private _greeting?: Reply;
  private _capabilities: Map<string, string> = new Map();
  private _secure = false;
  private _xclientSent = false;
  /** The one reply timer, due at `timerAt` (performance.now()); moved only for an earlier deadline. */
  private timer?: NodeJS.Timeout;
  private timerAt = 0;
  /** The DATA transfer whose content is streaming. */
  private transfer?: DataOp;

  constructor(opts: UpstreamOptions) {
    super();
    // setTimeout fires at once for 0, Infinity or more than 2^31-1 ms: a bad value must not act as "no wait".
    const t = opts.timeouts;
    for (const k of Object.keys(t) as Array<keyof typeof t>) {
      const v = t[k];
      if (v !== undefined && !(Number.isFinite(v) && v > 0 && v <= MAX_TIMER_MS)) {
        throw new TypeError(`upstream: timeouts.${k} must be 1..${MAX_TIMER_MS} ms, got ${v}`);
      }
    }
    this.opts = opts;
  }

  get greeting(): Reply {
    return this._greeting ?? { code: 0, lines: [] };
  }
  get capabilities(): ReadonlyMap<string, string> {
    return this._capabilities;
  }
  get secure(): boolean {
    return this._secure;
  }
  get xclientSent(): boolean {
    return this._xclientSent;
  }
  get closed(): boolean {
    return this.failed || this.gone;
  }

  /** Connect, greeting, EHLO, STARTTLS, XCLIENT. On failure the socket is destroyed and the error thrown. */
  async establish(identity: ClientIdentity, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw aborted({ stage: 'connect', command: '' });
    const onAbort = () => this.fail(aborted);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.connectTcp();
      if (this.opts.proxyProtocol !== 'off')
        this.socket.write(proxyHeader(this.opts.proxyProtocol, identity));
      const greeting = await this.request('greeting', '', this.opts.timeouts.greeting);
      if (greeting.code !== 220) {
        throw this.fatal(
          new UpstreamError('EGREETING', 'greeting', `backend greeted with ${greeting.code}`, {
            reply: greeting,
          }),
        );
      }
      this._greeting = greeting;
      await this.hello();
      await this.starttls();
      if (this.opts.xclient === 'auto' && this._capabilities.has('XCLIENT')) await this.xclient(identity);
    } catch (err) {
      this.fail(() => err as UpstreamError);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * MAIL (when given) and the RCPTs: in one write when the backend offers PIPELINING (RFC 2920),
   * otherwise one at a time. One reply each, in order; 4xx/5xx are results. The RCPTs are always
   * sent, also after a refused MAIL: the backend answers them itself (usually 503), so every reply the
   * caller relays is the backend's own.
   */
  envelope(mail: MailCommand | undefined, rcpts: MailCommand[]): Promise<EnvelopeResult> {
    if (this.busy) return this.busyError('envelope');
    const commands: Waiter[] = [];
    const op = new EnvelopeOp(commands, mail !== undefined, this._capabilities.has('PIPELINING'));
    try {
      if (mail) commands.push(new Waiter('mail', commandLine('MAIL FROM:<', mail), op));
      for (const r of rcpts) commands.push(new Waiter('rcpt', commandLine('RCPT TO:<', r), op));
    } catch (err) {
      return Promise.reject(err);
    }
    if (commands.length === 0) return Promise.resolve({ rcpts: [] });
    this.busy = 'envelope';
    if (this.closed) {
      this.rejectOp(op, this.closedError(commands[0]!.stage, commands[0]!.command));
    } else if (op.pipelined) {
      const timeout = this.opts.timeouts.command;
      let batch = '';
      for (const w of commands) {
        this.waiters.push(w);
        this.arm(w, timeout);
        batch += `${w.command}\r\n`;
      }
      this.socket.write(batch);
    } else {
      this.send(commands[0]!, this.opts.timeouts.command);
    }
    return op.promise;
  }

  /**
   * DATA, then (after 354 only) `body` streamed through the encoder with backpressure, the final dot
   * and its reply. A 4xx/5xx to DATA resolves as-is without reading the body. On EABORTED (size,
   * bare newline, NUL, body error) the connection is destroyed without the final dot; so it is on any
   * reply that arrives before our dot left (EPROTOCOL). In every case the body is left paused and
   * attached to nothing of ours: the caller drains it.
   */
  data(body: Readable, opts: DataOptions): Promise<Reply> {
    if (this.busy) return this.busyError('data');
    const op = new DataOp(body, opts);
    this.busy = 'data';
    this.send(new Waiter('data', 'DATA', op), this.opts.timeouts.dataStart);
    return op.promise;
  }

  rset(): Promise<Reply> {
    if (this.busy) return this.busyError('rset');
    const op = new Request('rset');
    this.busy = 'rset';
    this.send(new Waiter('rset', 'RSET', op), this.opts.timeouts.command);
    return op.promise;
  }

  authenticate(user: string, password: string): Promise<Reply> {
    if (this.busy) return this.busyError('auth');
    const op = new Request('rset');
    this.busy = 'auth';
    const token = Buffer.from(`\0${user}\0${password}`, 'utf8').toString('base64');
    // The command carries the password: the waiter's `command` shows up in errors and logs, so it is
    // named without it.
    const w = new Waiter('auth', 'AUTH PLAIN', op);
    this.send(w, this.opts.timeouts.command, `AUTH PLAIN ${token}`);
    return op.promise;
  }

  /** QUIT, a short wait for the 221, then the socket is closed. Never rejects. */
  quit(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.busy) {
      this.destroy();
      return Promise.resolve();
    }
    const op = new QuitOp();
    this.send(new Waiter('quit', 'QUIT', op), Math.min(this.opts.timeouts.command, QUIT_WAIT_MS));
    return op.promise;
  }

  /** Closes the socket now; an operation in flight rejects with EABORTED 'caller'. */
  destroy(): void {
    this.fail(destroyed);
  }

  // ---- establishment ----

  private connectTcp(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ms = this.opts.timeouts.connect;
      const socket = net.connect({ host: this.opts.host, port: this.opts.port });
      // We write whole batches ourselves; Nagle would only delay the last small write (the final dot).
      socket.setNoDelay(true);
      this.socket = socket;
      this.watch(socket);
      const timer = setTimeout(
        () =>
          this.fail(
            () =>
              new UpstreamError('ECONNECT', 'connect', `connect to ${this.target} timed out after ${ms} ms`),
          ),
        ms,
      );
      this.pending = {
        stage: 'connect',
        command: '',
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      socket.once('connect', () => {
        clearTimeout(timer);
        this.pending = undefined;
        resolve();
      });
    });
  }

  /** EHLO, or HELO when EHLO gets a 5xx (RFC 5321 4.1.4); both refused is EEHLO. */
  private async hello(name = this.opts.heloName): Promise<void> {
    const timeout = this.opts.timeouts.command;
    const ehlo = `EHLO ${name}`;
    let reply = await this.request('ehlo', ehlo, timeout);
    let command = ehlo;
    if (reply.code >= 200 && reply.code < 300) {
      this._capabilities = parseCapabilities(reply);
      return;
    }
    if (reply.code >= 500 && reply.code < 600) {
      command = `HELO ${name}`;
      reply = await this.request('ehlo', command, timeout);
      if (reply.code >= 200 && reply.code < 300) {
        this._capabilities = new Map();
        return;
      }
    }
    throw this.fatal(
      new UpstreamError('EEHLO', 'ehlo', `backend refused ${command.slice(0, 4)}: ${reply.code}`, {
        reply,
        command,
      }),
    );
  }

  /**
   * tls.mode required: STARTTLS must be offered and succeed (ETLS otherwise). opportunistic: used
   * when offered; a refused STARTTLS leaves the session in plaintext, but a failed handshake is ETLS,
   * since the socket is then in no usable state (the caller may try another backend).
   */
  private async starttls(): Promise<void> {
    const mode = this.opts.tls.mode;
    if (mode === 'none') return;
    if (!this._capabilities.has('STARTTLS')) {
      if (mode === 'required') {
        throw this.fatal(
          new UpstreamError('ETLS', 'starttls', 'TLS required but the backend does not offer STARTTLS'),
        );
      }
      return;
    }
    const reply = await this.request('starttls', 'STARTTLS', this.opts.timeouts.command, true);
    if (reply.code !== 220) {
      this.upgrading = false;
      if (mode === 'required') {
        throw this.fatal(
          new UpstreamError('ETLS', 'starttls', `backend refused STARTTLS: ${reply.code}`, {
            reply,
            command: 'STARTTLS',
          }),
        );
      }
      return;
    }
    await this.handshake();
    this._secure = true;
    await this.hello();
  }

  private handshake(): Promise<void> {
    return new Promise((resolve, reject) => {
      const { tls: t, host, timeouts } = this.opts;
      const plain = this.socket;
      plain.off('data', this.onSocketData);
      const secure = tls.connect({
        socket: plain,
        host,
        servername: t.servername ?? (net.isIP(host) ? undefined : host),
        ca: t.ca,
        rejectUnauthorized: t.verify,
      });
      this.socket = secure;
      this.watch(secure);
      const timer = setTimeout(
        () =>
          this.fail(
            () =>
              new UpstreamError(
                'ETIMEOUT',
                'starttls',
                `TLS handshake not done within ${timeouts.command} ms`,
                {
                  command: 'STARTTLS',
                },
              ),
          ),
        timeouts.command,
      );
      this.pending = {
        stage: 'starttls',
        command: 'STARTTLS',
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      secure.once('error', (err) => {
        if (this.pending?.stage !== 'starttls') return;
        this.fail(
          () =>
            new UpstreamError('ETLS', 'starttls', `TLS handshake failed: ${err.message}`, {
              command: 'STARTTLS',
              cause: err,
            }),
        );
      });
      secure.once('secureConnect', () => {
        clearTimeout(timer);
        this.pending = undefined;
        this.upgrading = false;
        resolve();
      });
    });
  }

  /**
   * XCLIENT with the attributes the backend offers, each answered 220, then EHLO again
   * (XCLIENT_README). That EHLO carries the client's own HELO name when it is a usable one: the
   * backend takes the HELO name from it (not from the HELO attribute), as with a direct connection.
   */
  private async xclient(identity: ClientIdentity): Promise<void> {
    const commands = xclientCommands(this._capabilities.get('XCLIENT') ?? '', identity);
    if (commands.length === 0) return;
    for (const command of commands) {
      const reply = await this.request('xclient', command, this.opts.timeouts.command);
      // Postfix's smtpd accepts with a new 220 greeting; Postfix's own smtp-sink accepts with 250.
      if (reply.code !== 220 && reply.code !== 250) {
        // Not authorised (550) or not understood: fail closed, never go on without the identity.
        throw this.fatal(
          new UpstreamError('EXCLIENT', 'xclient', `backend refused XCLIENT: ${reply.code}`, {
            reply,
            command,
          }),
        );
      }
    }
    this._xclientSent = true;
    const helo = identity.helo;
    await this.hello(helo && /^[\x21-\x7e]{1,255}$/.test(helo) ? helo : this.opts.heloName);
  }

  // ---- replies to the operations ----

  /** Hands `reply` to the operation that sent `w`: synchronously, inside the socket's data event. */
  private deliver(w: Waiter, reply: Reply): void {
    const op = w.op;
    switch (op.kind) {
      case 'request':
        this.resolveOp(op, reply);
        return;
      case 'rset':
        if (this.checkResult(op, reply, w)) this.resolveOp(op, reply);
        return;
      case 'quit':
        // The connection ends either way; a backend that does not say goodbye changes nothing.
        op.settled = true;
        this.fail(afterQuit);
        op.resolve();
        return;
      case 'envelope':
        this.envelopeReply(op, reply);
        return;
      case 'data':
        if (w === op.final) this.finalReply(op, w, reply);
        else this.dataReply(op, reply);
        return;
    }
  }

  private envelopeReply(op: EnvelopeOp, reply: Reply): void {
    const { replies, commands } = op;
    replies.push(reply);
    if (replies.length < commands.length) {
      if (!op.pipelined) this.send(commands[replies.length]!, this.opts.timeouts.command);
      return;
    }
    for (let i = 0; i < replies.length; i++) if (!this.checkResult(op, replies[i]!, commands[i]!)) return;
    this.resolveOp(op, op.hasMail ? { mail: replies[0]!, rcpts: replies.slice(1) } : { rcpts: replies });
  }

  /** The reply to DATA itself. */
  private dataReply(op: DataOp, reply: Reply): void {
    if (reply.code === 354) this.stream(op);
    else if (reply.code >= 400 && reply.code < 600) this.resolveOp(op, reply);
    else {
      const err = new UpstreamError('EPROTOCOL', 'data', `unexpected reply ${reply.code} to DATA`, {
        reply,
        command: 'DATA',
      });
      this.rejectOp(op, this.fatal(err));
    }
  }

  /**
   * The reply to the final dot, or one the backend sent before it. Any reply that arrives before our
   * dot left for the backend cannot be the answer to it, whenever the client's own dot came: a lax
   * backend says 250 to a message its parser ended early and may refuse the real one at our dot, so
   * relaying that 250 would be a false acceptance, and an early 4xx/5xx is no more reliable. It is
   * EPROTOCOL (the caller answers 4xx) and the connection is dropped before the dot can follow.
   */
  private finalReply(op: DataOp, w: Waiter, reply: Reply): void {
    const cls = Math.floor(reply.code / 100);
    if (op.dotFlushed && (cls === 2 || cls === 4 || cls === 5)) {
      this.settleData(op, reply);
      return;
    }
    const message = op.dotFlushed
      ? `unexpected reply ${reply.code} to DATA`
      : `backend replied ${reply.code} before our final dot reached it`;
    const err = new UpstreamError('EPROTOCOL', w.stage, message, { reply, command: w.command });
    this.settleDataError(op, err);
    this.fail(() => err);
  }

  /** 2xx, 4xx and 5xx are results; anything else fails the connection and rejects `op`. */
  private checkResult(op: AnyOp, reply: Reply, w: Waiter): boolean {
    const cls = Math.floor(reply.code / 100);
    if (cls === 2 || cls === 4 || cls === 5) return true;
    const err = new UpstreamError(
      'EPROTOCOL',
      w.stage,
      `unexpected reply ${reply.code} to ${w.command.split(' ')[0]}`,
      { reply, command: w.command },
    );
    this.rejectOp(op, this.fatal(err));
    return false;
  }

  private resolveOp<T>(op: Op<T> & { kind: AnyOp['kind'] }, value: T): void {
    op.settled = true;
    if (op.kind !== 'request' && op.kind !== 'quit') this.busy = undefined;
    op.resolve(value);
  }

  private rejectOp(op: AnyOp, err: Error): void {
    op.settled = true;
    if (op.kind !== 'request' && op.kind !== 'quit') this.busy = undefined;
    op.reject(err);
  }

  private busyError(name: string): Promise<never> {
    return Promise.reject(new Error(`upstream: ${name}() called while ${this.busy}() is running`));
  }

  // ---- DATA streaming ----

  private stream(op: DataOp): void {
    const { body } = op;
    // Registered before the first byte: a backend may answer early (e.g. 552 mid-stream).
    const final = new Waiter('data', 'DATA content', op);
    op.final = final;
    op.socket = this.socket;
    this.transfer = op;
    if (!this.closed) this.waiters.push(final);
    body.on('data', this.onBodyData);
    body.on('end', this.onBodyEnd);
    body.on('error', this.onBodyError);
    body.on('close', this.onBodyClose);
    if (body.errored) this.abort(op, 'source', 'message source already failed', body.errored);
    else if (body.readableEnded) this.onBodyEnd();
    else if (body.destroyed) this.onBodyClose();
    else if (!this.closed) body.resume();
    if (this.closed) this.settleDataError(op, this.closedError('data', 'DATA content'));
  }

  private readonly onBodyData = (chunk: Buffer | string): void => {
    const op = this.transfer;
    if (!op || this.closed) return;
    const out = op.encoder.encode(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (!Buffer.isBuffer(out)) {
      if (out.abort === 'size') this.abort(op, 'size', `message exceeds ${op.opts.maxBytes} bytes`);
      else if (out.abort === 'nul') this.abort(op, 'nul', 'NUL byte in message content');
      else if (out.abort === 'long-line')
        this.abort(op, 'long-line', `a message line longer than ${MAX_CONTENT_LINE} octets`);
      else this.abort(op, 'bare-newline', 'bare CR or LF in message content');
      return;
    }
    const socket = op.socket!;
    // Content is held until the check phase of this loop turn: a message that arrived with its final
    // dot (most do) goes out with the dot in one write instead of two. A write is most of what a
    // message on a kept connection costs now (about 15 % less node CPU per message, test/bench).
    if (out.length > 0 && socket.writableCorked === 0) {
      socket.cork();
      setImmediate(uncork, socket);
    }
    if (out.length > 0 && !socket.write(out) && !op.draining) {
      op.draining = true;
      op.body.pause();
      const { timeouts } = this.opts;
      op.blockTimer = setTimeout(this.onBlocked, timeouts.dataBlock ?? timeouts.dataStart);
      socket.once('drain', this.onDrain);
    }
  };

  private readonly onBlocked = (): void => {
    const { timeouts } = this.opts;
    const ms = timeouts.dataBlock ?? timeouts.dataStart;
    this.fail(() => new UpstreamError('ETIMEOUT', 'data', `backend took no content for ${ms} ms`));
  };

  private readonly onDrain = (): void => {
    const op = this.transfer;
    if (!op) return;
    op.draining = false;
    clearTimeout(op.blockTimer);
    op.body.resume();
  };

  private readonly onBodyEnd = (): void => {
    const op = this.transfer;
    if (!op) return;
    const tail = op.encoder.finish();
    if (!Buffer.isBuffer(tail)) {
      this.abort(op, 'bare-newline', 'bare CR at the end of message content');
      return;
    }
    op.dotSent = true;
    const final = op.final!;
    final.stage = 'dataDone';
    final.command = '.';
    this.arm(final, this.opts.timeouts.dataDone);
    if (!this.closed) op.socket!.write(tail, this.onDotFlushed);
  };

  private readonly onDotFlushed = (): void => {
    if (this.transfer?.dotSent) this.transfer.dotFlushed = true;
  };

  private readonly onBodyError = (err: Error): void => {
    const op = this.transfer;
    if (op) this.abort(op, 'source', `message source failed: ${err.message}`, err);
  };

  private readonly onBodyClose = (): void => {
    const op = this.transfer;
    if (op && !op.dotSent) this.abort(op, 'source', 'message source closed before its end');
  };

  private abort(op: DataOp, reason: AbortReason, message: string, cause?: unknown): void {
    const err = new UpstreamError('EABORTED', 'data', message, { abortReason: reason, cause });
    this.settleDataError(op, err);
    // No final dot: the backend must never take a truncated message as complete.
    this.fail(() => err);
  }

  /** Leaves the body paused and attached to nothing of ours. */
  private finishData(op: DataOp): void {
    const { body } = op;
    clearTimeout(op.blockTimer);
    body.off('data', this.onBodyData);
    body.off('end', this.onBodyEnd);
    body.off('error', this.onBodyError);
    body.off('close', this.onBodyClose);
    op.socket!.off('drain', this.onDrain);
    body.pause();
    if (this.transfer === op) this.transfer = undefined;
  }

  private settleData(op: DataOp, reply: Reply): void {
    if (op.settled) return;
    this.finishData(op);
    this.resolveOp(op, reply);
  }

  private settleDataError(op: DataOp, err: UpstreamError): void {
    if (op.settled) return;
    this.finishData(op);
    this.rejectOp(op, err);
  }

  // ---- the dialogue ----

  /** Sends `line` (none for the greeting) and resolves with its reply. */
  private request(stage: Stage, line: string, timeoutMs: number, lastPlaintext = false): Promise<Reply> {
    const op = new Request('request');
    const w = new Waiter(stage, line, op);
    w.lastPlaintext = lastPlaintext;
    this.send(w, timeoutMs);
    return op.promise;
  }

  /** Queues `w`, arms its deadline and writes its command; on a closed connection its op rejects. */
  private send(w: Waiter, timeoutMs: number, line = w.command): void {
    if (this.closed) {
      const op = w.op;
      if (op.kind === 'quit') {
        op.settled = true;
        op.resolve();
      } else this.rejectOp(op, this.closedError(w.stage, w.command));
      return;
    }
    this.waiters.push(w);
    this.arm(w, timeoutMs);
    if (line !== '') this.socket.write(`${line}\r\n`);
  }

  /** One timer per connection: it is moved only when `w` is due before it; timeUp() re-arms it. */
  private arm(w: Waiter, ms: number): void {
    if (this.closed) return;
    const deadline = performance.now() + ms;
    w.deadline = deadline;
    w.ms = ms;
    if (this.timer === undefined || deadline < this.timerAt) {
      clearTimeout(this.timer);
      this.timer = setTimeout(this.onTimer, ms);
      this.timerAt = deadline;
    }
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    let due: Waiter | undefined;
    for (const w of this.waiters) if (w.deadline < (due?.deadline ?? Number.POSITIVE_INFINITY)) due = w;
    if (!due) return;
    const left = due.deadline - performance.now();
    if (left > 0) {
      this.timer = setTimeout(this.onTimer, Math.ceil(left));
      this.timerAt = due.deadline;
      return;
    }
    const w = due;
    const what = w.command === '' ? w.stage : w.command.split(' ')[0];
    this.fail(
      () =>
        new UpstreamError('ETIMEOUT', w.stage, `no reply to ${what} within ${w.ms} ms`, {
          command: w.command,
        }),
    );
  };

  private readonly onSocketData = (chunk: Buffer): void => {
    if (this.upgrading || this.failed) return;
    let replies: Reply[];
    try {
      replies = this.parser.push(chunk);
    } catch (err) {
      this.fail(
        (w) =>
          new UpstreamError('EPROTOCOL', w.stage, `backend sent garbage: ${(err as Error).message}`, {
            command: w.command,
          }),
      );
      return;
    }
    if (replies.length === 1) {
      const w = this.take(replies[0]!);
      if (w) this.deliver(w, replies[0]!);
      return;
    }
    // Every reply of the chunk is matched to its command first, so an operation that goes on (a
    // 354 starting the content) does not take a reply meant for nobody.
    const taken: Waiter[] = [];
    for (const reply of replies) {
      const w = this.take(reply);
      if (!w) break;
      taken.push(w);
      if (this.upgrading) break;
    }
    for (let i = 0; i < taken.length; i++) this.deliver(taken[i]!, replies[i]!);
  };

  /** The waiter `reply` answers; with none, the dialogue is out of step and the connection fails. */
  private take(reply: Reply): Waiter | undefined {
    const w = this.waiters.shift();
    if (!w) {
      // A reply nobody asked for (e.g. a 421 before closing).
      this.fail(
        (p) =>
          new UpstreamError('EPROTOCOL', p.stage, `unsolicited reply ${reply.code} from the backend`, {
            reply,
          }),
      );
      return undefined;
    }
    if (w.lastPlaintext && reply.code === 220) {
      // RFC 3207 4.2: anything the backend sent after its 220 and before the handshake is discarded.
      this.upgrading = true;
      this.parser.reset();
    }
    return w;
  }

  // ---- failure and close ----

  private watch(socket: net.Socket): void {
    socket.on('data', this.onSocketData);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
  }

  private readonly onSocketError = (err: Error): void => {
    this.socketError ??= err;
  };

  private readonly onSocketClose = (): void => {
    if (this.gone) return;
    this.gone = true;
    // After our own QUIT or destroy() nothing waits any more: no error to describe the close.
    if (!this.failed) {
      const cause = this.socketError;
      const why = cause ? `: ${cause.message}` : '';
      this.fail(
        (w) =>
          new UpstreamError(
            w.stage === 'connect' ? 'ECONNECT' : 'ECLOSED',
            w.stage,
            w.stage === 'connect'
              ? `cannot connect to ${this.target}${why}`
              : `backend closed the connection${why}`,
            { command: w.command, cause },
          ),
      );
    }
    this.emit('close');
  };

  /**
   * The first failure wins: every pending operation rejects with `errorFor` (built only for one not
   * yet settled) and the socket is destroyed.
   */
  private fail(errorFor: ErrorFor): void {
    if (this.failed) return;
    this.failed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(errorFor(pending));
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      const op = w.op;
      if (op.settled) continue;
      if (op.kind === 'quit') {
        // quit() never rejects.
        op.settled = true;
        op.resolve();
      } else if (op.kind === 'data' && op.final) this.settleDataError(op, errorFor(w));
      else this.rejectOp(op, errorFor(w));
    }
    this.socket?.destroy();
  }

  /** Fails the connection with `err` and returns it, for `throw this.fatal(...)`. */
  private fatal(err: UpstreamError): UpstreamError {
    this.fail(() => err);
    return err;
  }

  private closedError(stage: Stage, command: string): UpstreamError {
    return new UpstreamError('ECLOSED', stage, 'backend connection is closed', { command });
  }

  private get target(): string {
    return `${this.opts.host}:${this.opts.port}`;
  }
}

function uncork(socket: net.Socket): void {
  socket.uncork();
}

function parseCapabilities(reply: Reply): Map<string, string> {
  const caps = new Map<string, string>();
  for (const line of reply.lines.slice(1)) {
    const text = line.trim();
    if (text === '') continue;
    const sp = text.search(/\s/);
    caps.set((sp < 0 ? text : text.slice(0, sp)).toUpperCase(), sp < 0 ? '' : text.slice(sp + 1).trim());
  }
  return caps;
}

/** `MAIL FROM:<a>` plus ` KEY=value` / ` KEY` parameters; CR or LF here would smuggle a command. */
function commandLine(head: string, cmd: MailCommand): string {
  let line = `${head}${cmd.address}>`;
  const params = cmd.params;
  for (const key of Object.keys(params)) {
    const value = params[key];
    line += value === true ? ` ${key}` : ` ${key}=${value}`;
  }
  if (line.includes('\r') || line.includes('\n'))
    throw new TypeError('upstream: CR or LF inside an SMTP command');
  return line;
}
