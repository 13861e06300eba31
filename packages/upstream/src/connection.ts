// One SMTP client connection to a backend MTA, driven by one proxied client session: TCP connect,
// optional PROXY header, greeting, EHLO (HELO fallback), STARTTLS, XCLIENT, then pipelined envelopes,
// streamed DATA, RSET and QUIT. Every wait has a deadline and every failure is one UpstreamError; a
// connection that failed is destroyed, never reused.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { DataEncoder } from './data-encoder.js';
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

interface Waiter {
  stage: Stage;
  command: string;
  resolve(reply: Reply): void;
  reject(err: UpstreamError): void;
  timer?: NodeJS.Timeout;
  /** RFC 3207 4.2: after this reply (220 to STARTTLS) nothing more is read in plaintext. */
  lastPlaintext?: boolean;
}

/** A connect or TLS handshake in progress: failed like a waiter, but answered by the socket. */
interface PendingOp {
  stage: Stage;
  command: string;
  reject(err: UpstreamError): void;
}

type ErrorFor = (w: { stage: Stage; command: string }) => UpstreamError;

/**
 * Connects and prepares a backend connection for a client session. Rejects with an UpstreamError
 * (ECONNECT, EGREETING, EEHLO, ETLS, EXCLIENT, ETIMEOUT, ECLOSED, EPROTOCOL; EABORTED 'caller' when
 * `signal` aborts). The signal covers establishment only; afterwards use destroy() or quit().
 */
export async function connectUpstream(
  opts: UpstreamOptions,
  identity: ClientIdentity,
  signal?: AbortSignal,
): Promise<UpstreamConnection> {
  const conn = new SmtpUpstreamConnection(opts);
  await conn.establish(identity, signal);
  return conn;
}

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
  private readonly onSocketData = (chunk: Buffer) => this.receive(chunk);

  constructor(opts: UpstreamOptions) {
    super();
    // setTimeout fires at once for 0, Infinity or more than 2^31-1 ms: a bad value must not act as "no wait".
    for (const [k, v] of Object.entries(opts.timeouts)) {
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
    const aborted: ErrorFor = (w) =>
      new UpstreamError('EABORTED', w.stage, 'connection attempt aborted by the caller', {
        abortReason: 'caller',
        command: w.command,
      });
    if (signal?.aborted) throw aborted({ stage: 'connect', command: '' });
    const onAbort = () => this.fail(aborted);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.connectTcp();
      if (this.opts.proxyProtocol !== 'off')
        this.socket.write(proxyHeader(this.opts.proxyProtocol, identity));
      const greeting = await this.expect('greeting', '', this.opts.timeouts.greeting);
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
  envelope(mail: MailCommand | undefined, rcpts: MailCommand[]): Promise<{ mail?: Reply; rcpts: Reply[] }> {
    return this.exclusive('envelope', async () => {
      const cmds: Array<{ stage: Stage; line: string }> = [];
      if (mail) cmds.push({ stage: 'mail', line: commandLine(`MAIL FROM:<${mail.address}>`, mail.params) });
      for (const r of rcpts)
        cmds.push({ stage: 'rcpt', line: commandLine(`RCPT TO:<${r.address}>`, r.params) });
      const timeout = this.opts.timeouts.command;
      let replies: Reply[];
      if (this._capabilities.has('PIPELINING')) {
        const waits = cmds.map((c) => this.expect(c.stage, c.line, timeout));
        this.write(cmds.map((c) => `${c.line}\r\n`).join(''));
        replies = await Promise.all(waits);
      } else {
        replies = [];
        for (const c of cmds) replies.push(await this.command(c.stage, c.line, timeout));
      }
      for (const [i, r] of replies.entries()) this.checkResult(r, cmds[i]!.stage, cmds[i]!.line);
      return mail ? { mail: replies[0]!, rcpts: replies.slice(1) } : { rcpts: replies };
    });
  }

  /**
   * DATA, then (after 354 only) `body` streamed through the encoder with backpressure, the final dot
   * and its reply. A 4xx/5xx to DATA resolves as-is without reading the body. On EABORTED (size,
   * bare newline, body error) the connection is destroyed without the final dot. In every case the
   * body is left paused and attached to nothing of ours: the caller drains it.
   */
  data(body: Readable, opts: DataOptions): Promise<Reply> {
    return this.exclusive('data', async () => {
      const start = await this.command('data', 'DATA', this.opts.timeouts.dataStart);
      if (start.code === 354) return this.stream(body, opts);
      if (start.code >= 400 && start.code < 600) return start;
      throw this.fatal(
        new UpstreamError('EPROTOCOL', 'data', `unexpected reply ${start.code} to DATA`, {
          reply: start,
          command: 'DATA',
        }),
      );
    });
  }

  rset(): Promise<Reply> {
    return this.exclusive('rset', async () => {
      const reply = await this.command('rset', 'RSET', this.opts.timeouts.command);
      this.checkResult(reply, 'rset', 'RSET');
      return reply;
    });
  }

  /** QUIT, a short wait for the 221, then the socket is closed. Never rejects. */
  async quit(): Promise<void> {
    if (this.closed) return;
    if (this.busy) {
      this.destroy();
      return;
    }
    try {
      await this.command('quit', 'QUIT', Math.min(this.opts.timeouts.command, QUIT_WAIT_MS));
    } catch {
      // The connection ends either way; a backend that does not say goodbye changes nothing.
    }
    this.fail(
      (w) => new UpstreamError('ECLOSED', w.stage, 'connection closed after QUIT', { command: w.command }),
    );
  }

  /** Closes the socket now; an operation in flight rejects with EABORTED 'caller'. */
  destroy(): void {
    this.fail(
      (w) =>
        new UpstreamError('EABORTED', w.stage, 'connection destroyed by the caller', {
          abortReason: 'caller',
          command: w.command,
        }),
    );
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
    let reply = await this.command('ehlo', ehlo, timeout);
    let command = ehlo;
    if (reply.code >= 200 && reply.code < 300) {
      this._capabilities = parseCapabilities(reply);
      return;
    }
    if (reply.code >= 500 && reply.code < 600) {
      command = `HELO ${name}`;
      reply = await this.command('ehlo', command, timeout);
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
    const reply = await this.command('starttls', 'STARTTLS', this.opts.timeouts.command, true);
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
      const reply = await this.command('xclient', command, this.opts.timeouts.command);
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

  // ---- DATA streaming ----

  private stream(body: Readable, opts: DataOptions): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const { timeouts } = this.opts;
      const blockMs = timeouts.dataBlock ?? timeouts.dataStart;
      const encoder = new DataEncoder(opts);
      const socket = this.socket;
      // Registered before the first byte: a backend may answer early (e.g. 552 mid-stream).
      const [waiter, final] = this.enqueue('data', 'DATA content');
      let done = false;
      let dotSent = false;
      let draining = false;
      let blockTimer: NodeJS.Timeout | undefined;

      const finish = () => {
        done = true;
        clearTimeout(blockTimer);
        body.off('data', onData);
        body.off('end', onEnd);
        body.off('error', onError);
        body.off('close', onSourceClose);
        socket.off('drain', onDrain);
        body.pause();
      };
      const settle = (reply: Reply) => {
        if (done) return;
        finish();
        resolve(reply);
      };
      const settleError = (err: UpstreamError) => {
        if (done) return;
        finish();
        reject(err);
      };
      const abort = (reason: AbortReason, message: string, cause?: unknown) => {
        const err = new UpstreamError('EABORTED', 'data', message, { abortReason: reason, cause });
        settleError(err);
        // No final dot: the backend must never take a truncated message as complete.
        this.fail(() => err);
      };
      const onData = (chunk: Buffer | string) => {
        if (done || this.closed) return;
        const out = encoder.encode(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        if (!Buffer.isBuffer(out)) {
          if (out.abort === 'size') abort('size', `message exceeds ${opts.maxBytes} bytes`);
          else abort('bare-newline', 'bare CR or LF in message content');
          return;
        }
        if (out.length > 0 && !socket.write(out) && !draining) {
          draining = true;
          body.pause();
          blockTimer = setTimeout(
            () =>
              this.fail(
                () => new UpstreamError('ETIMEOUT', 'data', `backend took no content for ${blockMs} ms`),
              ),
            blockMs,
          );
          socket.once('drain', onDrain);
        }
      };
      const onDrain = () => {
        draining = false;
        clearTimeout(blockTimer);
        if (!done) body.resume();
      };
      const onEnd = () => {
        if (done) return;
        const tail = encoder.finish();
        if (!Buffer.isBuffer(tail)) {
          abort('bare-newline', 'bare CR at the end of message content');
          return;
        }
        dotSent = true;
        waiter.stage = 'dataDone';
        waiter.command = '.';
        this.arm(waiter, timeouts.dataDone);
        socket.write(tail);
      };
      const onError = (err: Error) => abort('source', `message source failed: ${err.message}`, err);

      const onSourceClose = () => {
        if (!dotSent) abort('source', 'message source closed before its end');
      };

      final.then(
        (reply) => {
          const cls = Math.floor(reply.code / 100);
          if (dotSent && (cls === 2 || cls === 4 || cls === 5)) {
            settle(reply);
          } else if (!dotSent && (cls === 4 || cls === 5)) {
            // The backend gave up mid-stream; it is in no known state, so this connection is done.
            settle(reply);
            this.destroy();
          } else {
            // Above all a 2xx before our final dot: relaying it would be a false acceptance.
            const err = new UpstreamError(
              'EPROTOCOL',
              waiter.stage,
              `unexpected reply ${reply.code} to DATA`,
              {
                reply,
                command: waiter.command,
              },
            );
            settleError(err);
            this.fail(() => err);
          }
        },
        (err: UpstreamError) => settleError(err),
      );

      body.on('data', onData);
      body.on('end', onEnd);
      body.on('error', onError);
      body.on('close', onSourceClose);
      if (body.errored) abort('source', 'message source already failed', body.errored);
      else if (body.readableEnded) onEnd();
      else if (body.destroyed) onSourceClose();
      else body.resume();
    });
  }

  // ---- the dialogue ----

  private async exclusive<T>(name: string, run: () => Promise<T>): Promise<T> {
    if (this.busy) throw new Error(`upstream: ${name}() called while ${this.busy}() is running`);
    this.busy = name;
    try {
      return await run();
    } finally {
      this.busy = undefined;
    }
  }

  private command(stage: Stage, line: string, timeoutMs: number, lastPlaintext = false): Promise<Reply> {
    const reply = this.expect(stage, line, timeoutMs, lastPlaintext);
    this.write(`${line}\r\n`);
    return reply;
  }

  private write(data: string): void {
    if (!this.closed) this.socket.write(data);
  }

  private expect(stage: Stage, command: string, timeoutMs: number, lastPlaintext = false): Promise<Reply> {
    const [waiter, reply] = this.enqueue(stage, command);
    waiter.lastPlaintext = lastPlaintext;
    this.arm(waiter, timeoutMs);
    return reply;
  }

  private enqueue(stage: Stage, command: string): [Waiter, Promise<Reply>] {
    let waiter!: Waiter;
    const reply = new Promise<Reply>((resolve, reject) => {
      waiter = { stage, command, resolve, reject };
    });
    if (this.closed) waiter.reject(this.closedError(stage, command));
    else this.waiters.push(waiter);
    return [waiter, reply];
  }

  private arm(w: Waiter, ms: number): void {
    if (this.closed) return;
    w.timer = setTimeout(() => {
      const what = w.command === '' ? w.stage : w.command.split(' ')[0];
      this.fail(
        () =>
          new UpstreamError('ETIMEOUT', w.stage, `no reply to ${what} within ${ms} ms`, {
            command: w.command,
          }),
      );
    }, ms);
  }

  private receive(chunk: Buffer): void {
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
    for (const reply of replies) {
      const w = this.waiters.shift();
      if (!w) {
        // A reply nobody asked for (e.g. a 421 before closing): the dialogue is out of step.
        this.fail(
          (p) =>
            new UpstreamError('EPROTOCOL', p.stage, `unsolicited reply ${reply.code} from the backend`, {
              reply,
            }),
        );
        return;
      }
      clearTimeout(w.timer);
      w.resolve(reply);
      if (w.lastPlaintext && reply.code === 220) {
        // RFC 3207 4.2: anything the backend sent after its 220 and before the handshake is discarded.
        this.upgrading = true;
        this.parser.reset();
        return;
      }
    }
  }

  private checkResult(reply: Reply, stage: Stage, command: string): void {
    const cls = Math.floor(reply.code / 100);
    if (cls === 2 || cls === 4 || cls === 5) return;
    throw this.fatal(
      new UpstreamError('EPROTOCOL', stage, `unexpected reply ${reply.code} to ${command.split(' ')[0]}`, {
        reply,
        command,
      }),
    );
  }

  // ---- failure and close ----

  private watch(socket: net.Socket): void {
    socket.on('data', this.onSocketData);
    socket.on('error', (err) => {
      this.socketError ??= err;
    });
    socket.on('close', () => this.onClose());
  }

  private onClose(): void {
    if (this.gone) return;
    this.gone = true;
    const why = this.socketError ? `: ${this.socketError.message}` : '';
    this.fail(
      (w) =>
        new UpstreamError(
          w.stage === 'connect' ? 'ECONNECT' : 'ECLOSED',
          w.stage,
          w.stage === 'connect'
            ? `cannot connect to ${this.target}${why}`
            : `backend closed the connection${why}`,
          { command: w.command, cause: this.socketError },
        ),
    );
    this.emit('close');
  }

  /** The first failure wins: every pending wait rejects with `errorFor` and the socket is destroyed. */
  private fail(errorFor: ErrorFor): void {
    if (this.failed) return;
    this.failed = true;
    const pending = this.pending;
    this.pending = undefined;
    pending?.reject(errorFor(pending));
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(errorFor(w));
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
function commandLine(head: string, params: Record<string, string | true>): string {
  let line = head;
  for (const [key, value] of Object.entries(params)) line += value === true ? ` ${key}` : ` ${key}=${value}`;
  if (/[\r\n]/.test(line)) throw new TypeError('upstream: CR or LF inside an SMTP command');
  return line;
}
