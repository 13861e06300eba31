// The SMTP server side of a session: greeting, EHLO/HELO, STARTTLS, MAIL/RCPT parsing, DATA,
// RSET/NOOP/QUIT/VRFY/HELP, pipelining (commands are answered one at a time, in order), idle
// timeout. The bytes are framed by framing.ts (command lines, DATA un-stuffing and its end). Everything after the greeting that a backend
// decides (MAIL, RCPT, DATA) goes to the session (session.ts), which owns the client's identity and
// the transaction; its replies are written verbatim. A new SMTP command (AUTH) is a case of
// #command here, its exchange a mode of the front, and what it learns goes to the session.
//
// Why our own and not smtp-server: a proxy needs a small part of an SMTP server, and smtp-server's
// general machinery (a Writable parser per connection, a PassThrough per message, per-command
// closures, a crypto-random id, punycode and xtext rewriting of addresses, its own reply
// formatting that we had to patch) cost more CPU per message than the whole TCP relaying (see
// BENCHMARKS.md). The behaviours it gave us are kept and tested: DATA ends only on CRLF.CRLF
// (a leading dot after LF is unstuffed, bare CR/LF are content for the encoder to normalise or
// reject), command lines are capped, early/HTTP/unknown-command floods get 421, pipelined plaintext
// after STARTTLS is discarded (RFC 3207 4.2), replies to MAIL/RCPT/DATA are the session's own.
import type { Duplex, Readable } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { encodeWire, hasRawBytes, type Reply } from '@smtp-lb/upstream';
import { replies, wireReply } from '../replies.js';
import type { Client, SmtpAddress, Transaction } from '../transaction.js';
import { CommandDeadline, DataRate } from './deadlines.js';
import { CommandLines, DotReader, MAX_LINE, TOO_LONG } from './framing.js';
import {
  MECHANISMS,
  type SaslCredentials,
  type SaslMechanism,
  type SaslState,
  type SaslStep,
  saslContinue,
  saslStart,
} from './sasl.js';

/** What the front asks of its session; the front itself keeps only the protocol's state. */
export interface FrontSession {
  readonly client: Client;
  /** The open transaction (an accepted MAIL), read-only here. */
  readonly transaction: Transaction | undefined;
  /** EHLO/HELO with a valid name (lower-cased): any transaction is dropped. */
  hello(proto: 'ESMTP' | 'SMTP', name: string): void;
  /** STARTTLS succeeded: the session starts over inside TLS. */
  secured(): void;
  /** RSET: the transaction is dropped. */
  reset(): void;
  /** Syntax checked; a 2xx reply opens the transaction. */
  mail(from: SmtpAddress): Promise<Reply>;
  /** Inside a transaction. */
  rcpt(to: SmtpAddress): Promise<Reply>;
  /** AUTH decoded (not yet authenticated, no transaction); a 235 sets `client.user`. */
  auth(creds: SaslCredentials): Promise<Reply>;
  /** Called after 354; the reply is written once the client's final dot has arrived as well. */
  data(body: Readable): Promise<Reply>;
  /** The connection is gone (once). */
  close(): void;
  /** A protocol problem worth a log line (line too long, too many unknown commands, TLS failure). */
  problem(what: string, detail?: Record<string, unknown>): void;
}

export interface FrontOptions {
  /** Our name in the greeting and the EHLO reply. */
  name: string;
  /** Advertised as SIZE; a larger SIZE= on MAIL gets 552. */
  maxMessageSize: number;
  /** Idle timeout in ms: no byte from the client for this long ends the session with 421. */
  idleTimeout: number;
  /** A command line must be complete this long (ms) after its first byte; DATA's most time in hand. */
  commandTimeout: number;
  /** Bytes/s DATA must keep up (0: off), see DataRate. */
  minDataRate: number;
  /** STARTTLS is offered when this returns a context (and the session is not secure yet). */
  starttls?: () => SecureContext | undefined;
  /** AUTH is offered (under TLS; also without it when `plaintext`); absent: AUTH is unknown here. */
  auth?: { plaintext: boolean };
  /** DSN is offered (the listener's `dsn`); off, its parameters are refused like any unknown one. */
  dsn: boolean;
}

const MAX_UNKNOWN = 10;
// An HTTP request line: a path (`GET / HTTP/1.1`), or CONNECT's authority (`CONNECT host:port HTTP/1.1`,
// an open-proxy probe) or an absolute URL (`GET http://host/ HTTP/1.0`).
const HTTP =
  /^(?:(?:OPTIONS|GET|HEAD|POST|PUT|PATCH|DELETE|TRACE) (?:\/|[a-z][a-z0-9+.-]*:\/\/)\S*|CONNECT \S+) HTTP\/\d\.\d$/i;
// C0 controls except TAB, and DEL, have no place in a command line.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const HELO_NAME = /^[\x21-\x7e]{1,255}$/;

let counter = 0;
const prefix = `${process.pid.toString(36)}${Date.now().toString(36)}`;
/** Unique per process start and connection; cheap (no crypto per connection). */
export function sessionId(): string {
  counter = (counter + 1) % 0x7fffffff;
  return `${prefix}${counter.toString(36)}`;
}

type Mode = 'command' | 'data' | 'closed';

function uncork(socket: Duplex): void {
  socket.uncork();
}

export class SmtpFront {
  readonly #opts: FrontOptions;
  readonly #session: FrontSession;
  #socket: Duplex;
  #mode: Mode = 'command';
  readonly #lines = new CommandLines();
  /** A command is being answered by the session; input waits in #lines. */
  #busy = false;
  #unknown = 0;
  /** AUTH waiting for the client's answer to our 334. */
  #sasl: SaslState | undefined;
  readonly #dot = new DotReader();
  /** DATA: the session's reply, held until the client's final dot is in too. */
  #dataReply: Reply | undefined;
  readonly #onData = (chunk: Buffer) => this.#receive(chunk);
  readonly #onClose = () => this.#closed();
  readonly #onTimeout = () => this.#timeout();
  /**
   * The client shut down its sending side (a TCP half-close, often right after a pipelined dot and
   * QUIT): what it sent is still read to the end, every command answered and every reply written,
   * then the session closes. Only a message without its final dot is lost with it.
   */
  #inputEnded = false;
  readonly #onEnd = () => {
    this.#inputEnded = true;
    if (this.#dot.reading) {
      this.#dot.fail('client went away during DATA');
      this.#end();
      return;
    }
    if (this.#mode === 'command') this.#pump();
  };

  readonly #commandDeadline: CommandDeadline;
  readonly #dataRate: DataRate;

  constructor(socket: Duplex, session: FrontSession, opts: FrontOptions) {
    this.#socket = socket;
    this.#session = session;
    this.#opts = opts;
    this.#commandDeadline = new CommandDeadline(opts.commandTimeout, () => this.#commandTooSlow());
    this.#dataRate = new DataRate(
      opts.commandTimeout,
      opts.minDataRate,
      () => this.#dataTooSlow(),
      () => this.#socket.isPaused(),
    );
  }

  get closed(): boolean {
    return this.#mode === 'closed';
  }

  /** Between transactions with nothing in flight (a drain may say 421 now). */
  get idle(): boolean {
    return this.#mode === 'command' && !this.#busy && this.#session.transaction === undefined;
  }

  /** Greets (or refuses with `refusal`, then closes) and starts reading. */
  start(refusal?: Reply): void {
    const s = this.#socket;
    s.on('close', this.#onClose);
    s.on('error', () => this.#socket.destroy());
    if (refusal) {
      // session.close follows from the socket's close, as for every session.
      this.#mode = 'closed';
      s.end(wireReply(refusal));
      this.#cutOff();
      return;
    }
    this.#watch(s);
    s.write(wireReply(replies.greeting(this.#opts.name)));
    s.resume();
  }

  /** Writes `r` and closes the session (drain, shutdown). */
  shutdown(r: Reply): void {
    if (this.#mode === 'closed') return;
    this.#say(r);
    this.#end();
  }

  #watch(s: Duplex): void {
    s.on('data', this.#onData);
    // The client is done sending (the listener's sockets and the tarpit's wrapper are half-open:
    // nothing closes our side but us).
    s.on('end', this.#onEnd);
    if ('setTimeout' in s && typeof s.setTimeout === 'function') {
      (s as unknown as { setTimeout(ms: number): void }).setTimeout(this.#opts.idleTimeout);
      s.on('timeout', this.#onTimeout);
    }
  }

  /**
   * A reply the socket could not take at once (a slow reader, or the tarpit holding it) stops the
   * reading of further commands until it drained: pipelined commands are answered no faster than
   * the replies go out.
   */
  #say(r: Reply): void {
    if (this.#mode === 'closed' || this.#socket.destroyed) return;
    // Replies made in one turn of the event loop (a pipelined group: RCPT's and DATA's, the final
    // reply and QUIT's) leave in one write.
    if (this.#socket.writableCorked === 0) {
      this.#socket.cork();
      setImmediate(uncork, this.#socket);
    }
    // A backend's reply text may carry bytes that are not UTF-8: they leave as they came.
    if (!this.#socket.write(encodeWire(wireReply(r))) && !this.#blocked) {
      this.#blocked = true;
      this.#socket.once('drain', this.#onDrain);
    }
    // 421: the service is closing this channel (RFC 5321 3.8), whoever said it.
    if (r.code === 421) this.#end();
  }

  #blocked = false;
  readonly #onDrain = () => {
    this.#blocked = false;
    this.#socket.resume();
    this.#pump();
  };

  #end(): void {
    if (this.#mode === 'closed') return;
    this.#mode = 'closed';
    this.#commandDeadline.done();
    this.#dataRate.stop();
    this.#lines.clear();
    this.#socket.off('data', this.#onData);
    this.#socket.end();
    this.#cutOff();
    this.#dot.fail('session ended during DATA');
  }

  /** A client that does not close after our last word is cut off. */
  #cutOff(): void {
    this.#cutOffTimer = setTimeout(() => this.#socket.destroy(), 5000);
    this.#cutOffTimer.unref();
  }

  #cutOffTimer: NodeJS.Timeout | undefined;

  #closed(): void {
    clearTimeout(this.#cutOffTimer);
    this.#commandDeadline.done();
    this.#dataRate.stop();
    this.#mode = 'closed';
    this.#lines.clear();
    this.#dot.fail('client went away during DATA');
    this.#session.close();
  }

  #timeout(): void {
    if (this.#mode === 'closed') return;
    this.#session.problem('idle timeout', { timeoutMs: this.#opts.idleTimeout });
    this.shutdown(replies.idleTimeout(this.#opts.name));
  }

  #commandTooSlow(): void {
    if (this.#mode !== 'command' || this.#busy || this.#lines.size === 0) return;
    this.#session.problem('command line not complete in time', { timeoutMs: this.#opts.commandTimeout });
    this.shutdown(replies.commandTimeout(this.#opts.commandTimeout));
  }

  /** The message is dropped (the backend gets no final dot) and the session ends. */
  #dataTooSlow(): void {
    if (this.#mode !== 'data') return;
    this.#session.problem('DATA slower than the minimum rate', { minDataRate: this.#opts.minDataRate });
    this.#say(replies.dataTooSlow(this.#opts.minDataRate));
    this.#end();
  }

  // ---- input ----

  #receive(chunk: Buffer): void {
    if (this.#mode === 'data') {
      this.#feedData(chunk);
      return;
    }
    if (this.#mode === 'closed') return;
    this.#lines.push(chunk);
    this.#pump();
  }

  /** Answers complete command lines in order, one at a time. */
  #pump(): void {
    while (!this.#busy && !this.#blocked && this.#mode === 'command') {
      const line = this.#lines.next();
      if (line === undefined) {
        // Everything a half-closed client sent is answered (a line without its LF never will be).
        if (this.#inputEnded) this.#end();
        else if (this.#lines.size > 0) this.#commandDeadline.started();
        return;
      }
      this.#commandDeadline.done();
      if (line === TOO_LONG) {
        this.#tooLong();
        return;
      }
      this.#command(line);
    }
    // Pipelined input waits while the session works; a flood of it pauses the socket.
    if ((this.#busy || this.#blocked) && this.#lines.size > MAX_LINE) this.#socket.pause();
  }

  #tooLong(): void {
    this.#session.problem('command line too long', { maxBytes: MAX_LINE });
    this.shutdown(replies.lineTooLong());
  }

  #command(text: string) {
    if (this.#sasl) return this.#saslLine(text);
    const sp = text.indexOf(' ');
    const verb = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : text.slice(sp + 1);
    switch (verb) {
      case 'EHLO':
      case 'HELO':
        return this.#hello(verb, arg);
      case 'MAIL':
        return this.#mail(text);
      case 'RCPT':
        return this.#rcpt(text);
      case 'DATA':
        return this.#data(arg);
      case 'RSET':
        this.#session.reset();
        return this.#say(replies.reset());
      case 'NOOP':
        return this.#say(replies.noop());
      case 'QUIT':
        return this.shutdown(replies.bye());
      case 'STARTTLS':
        return this.#starttls(arg);
      case 'AUTH':
        return this.#auth(arg);
      case 'VRFY':
        return this.#say(replies.vrfy());
      case 'HELP':
        return this.#say(replies.help());
      case 'XCLIENT':
      case 'XFORWARD':
        return this.#say(replies.identityCommand(verb));
      default:
        return this.#unrecognized(text);
    }
  }

  #unrecognized(text: string) {
    if (HTTP.test(text)) {
      this.#session.problem('HTTP request on the SMTP port');
      return this.shutdown(replies.httpRequest());
    }
    if (++this.#unknown >= MAX_UNKNOWN) {
      this.#session.problem('too many unrecognized commands', { count: this.#unknown });
      return this.shutdown(replies.tooManyUnrecognized());
    }
    this.#say(replies.unrecognized());
  }

  #hello(verb: 'EHLO' | 'HELO', arg: string) {
    const name = arg.trim();
    if (name === '' || /\s/.test(name)) return this.#say(replies.helloSyntax(verb));
    if (!HELO_NAME.test(name)) return this.#say(replies.helloName());
    this.#session.hello(verb === 'EHLO' ? 'ESMTP' : 'SMTP', name.toLowerCase());
    const address = this.#session.client.address;
    if (verb === 'HELO') return this.#say(replies.hello(this.#opts.name, address, []));
    const keywords = ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'];
    if (this.#opts.dsn) keywords.push('DSN');
    const secure = this.#session.client.secure;
    if (!secure && this.#opts.starttls?.()) keywords.push('STARTTLS');
    if (secure) keywords.push('REQUIRETLS');
    if (this.#authOffered()) keywords.push(`AUTH ${MECHANISMS.join(' ')}`);
    keywords.push(`SIZE ${this.#opts.maxMessageSize}`);
    this.#say(replies.hello(this.#opts.name, address, keywords));
  }

  #needHello(): boolean {
    if (this.#session.client.helo !== '') return false;
    this.#say(replies.helloFirst());
    return true;
  }

  #mail(text: string) {
    if (this.#needHello()) return;
    const parsed = parsePath(text, 'FROM');
    if (typeof parsed === 'string') return this.#say(replies.pathSyntax(parsed));
    if (hasRawBytes(parsed.address)) return this.#notUtf8('MAIL');
    if (this.#session.transaction) return this.#say(replies.nestedMail());
    const bad = this.#checkMailParams(parsed.args);
    if (bad) return this.#say(bad);
    this.#await(this.#session.mail(parsed), 'MAIL');
  }

  /**
   * RFC 6531 3.3: an address is ASCII or UTF-8. One with other bytes is refused, never passed on with
   * its bytes rewritten (Postfix answers such a line `500 5.5.2 Error: bad UTF-8 syntax`).
   */
  #notUtf8(verb: 'MAIL' | 'RCPT') {
    this.#session.problem(`${verb} address is not UTF-8`);
    this.#say(replies.addressNotUtf8());
  }

  #checkMailParams(args: Record<string, string | true>): Reply | undefined {
    const size = args.SIZE;
    if (size !== undefined) {
      if (size === true || !/^\d{1,20}$/.test(size)) return replies.sizeSyntax();
      if (Number(size) > this.#opts.maxMessageSize) return replies.tooBig(this.#opts.maxMessageSize);
    }
    const body = args.BODY;
    if (body !== undefined && (body === true || !/^(7BIT|8BITMIME)$/i.test(body)))
      return replies.bodySyntax();
    if (args.SMTPUTF8 !== undefined && args.SMTPUTF8 !== true) return replies.smtputf8Syntax();
    const dsn = this.#dsnNotOffered(args, ['RET', 'ENVID']);
    if (dsn) return dsn;
    if (args.RET !== undefined && (args.RET === true || !/^(FULL|HDRS)$/i.test(args.RET)))
      return replies.retSyntax();
    if (args.REQUIRETLS !== undefined && !this.#session.client.secure) return replies.requireTlsWithoutTls();
    return undefined;
  }

  /** RFC 5321 4.1.1.11: a parameter of an extension we did not offer is refused (555), not ignored. */
  #dsnNotOffered(args: Record<string, string | true>, names: readonly string[]): Reply | undefined {
    if (this.#opts.dsn) return undefined;
    const given = names.find((n) => args[n] !== undefined);
    return given === undefined ? undefined : replies.dsnNotOffered(given);
  }

  #rcpt(text: string) {
    if (this.#needHello()) return;
    const parsed = parsePath(text, 'TO');
    if (typeof parsed === 'string' || parsed.address === '') return this.#say(replies.recipientSyntax());
    if (hasRawBytes(parsed.address)) return this.#notUtf8('RCPT');
    if (!this.#session.transaction) return this.#say(replies.needMail());
    const dsn = this.#dsnNotOffered(parsed.args, ['NOTIFY', 'ORCPT']);
    if (dsn) return this.#say(dsn);
    const notify = parsed.args.NOTIFY;
    if (notify !== undefined) {
      const values = notify === true ? [''] : notify.toUpperCase().split(',');
      if (!values.every((v) => v === 'NEVER' || v === 'SUCCESS' || v === 'FAILURE' || v === 'DELAY'))
        return this.#say(replies.notifySyntax());
      if (values.includes('NEVER') && values.length > 1) return this.#say(replies.notifyNeverCombined());
    }
    const orcpt = parsed.args.ORCPT;
    if (orcpt !== undefined && (orcpt === true || !/^[a-z0-9!#$%&'*+/=?^_`{|}~-]+;./i.test(orcpt)))
      return this.#say(replies.orcptSyntax());
    this.#await(this.#session.rcpt(parsed), 'RCPT');
  }

  #data(arg: string) {
    if (this.#needHello()) return;
    if (arg.trim() !== '') return this.#say(replies.dataSyntax());
    const tx = this.#session.transaction;
    if (!tx) return this.#say(replies.needMail());
    if (tx.recipients.length === 0) return this.#say(replies.needRcpt());
    const body = this.#dot.begin(this.#socket);
    this.#dataReply = undefined;
    this.#busy = true;
    this.#mode = 'data';
    this.#session.data(body).then(
      (r) => this.#dataDone(r),
      () => this.#dataDone(replies.internalError()),
    );
    this.#say(replies.sendData());
    this.#dataRate.start();
    // Content pipelined behind DATA (not allowed before 354, RFC 2920, but harmless) is content.
    const rest = this.#lines.take();
    if (rest.length > 0) this.#feedData(rest);
  }

  /** The session answered; the reply goes out once the client's final dot is in too. */
  #dataDone(r: Reply): void {
    this.#dataReply = r;
    if (this.#dot.reading) {
      // The session no longer reads: whatever else arrives before the dot is dropped.
      this.#dot.drop();
      return;
    }
    this.#finishData();
  }

  #finishData(): void {
    const r = this.#dataReply!;
    this.#dot.finish();
    this.#dataReply = undefined;
    this.#mode = this.#mode === 'closed' ? 'closed' : 'command';
    this.#busy = false;
    this.#unknown = 0;
    this.#say(r);
    this.#socket.resume();
    this.#pump();
  }

  /** DATA content; at the final dot, what follows is the next command. */
  #feedData(chunk: Buffer): void {
    this.#dataRate.bytes(chunk.length);
    const rest = this.#dot.feed(chunk);
    if (rest === undefined) return;
    this.#dataRate.stop();
    this.#mode = 'command';
    this.#busy = true; // still: the reply waits for the session
    if (rest.length > 0) this.#lines.push(rest);
    if (this.#dataReply !== undefined) this.#finishData();
  }

  // ---- the session's answers ----

  /** The session's reply to MAIL or RCPT; nothing else is read until it is written. */
  #await(p: Promise<Reply>, what: string): void {
    this.#busy = true;
    p.then(
      (r) => {
        if (this.#mode === 'closed') return;
        this.#busy = false;
        this.#say(r);
        this.#socket.resume();
        this.#pump();
      },
      (err: unknown) => {
        if (this.#mode === 'closed') return;
        this.#busy = false;
        this.#session.problem(`${what} failed unexpectedly`, { err });
        this.#say(replies.internalError());
        this.#socket.resume();
        this.#pump();
      },
    );
  }

  // ---- AUTH (RFC 4954) ----

  /** Offered under TLS, or in plaintext where the listener explicitly allows it. */
  #authOffered(): boolean {
    const auth = this.#opts.auth;
    return auth !== undefined && (this.#session.client.secure || auth.plaintext);
  }

  #auth(arg: string) {
    if (!this.#opts.auth) return this.#unrecognized('AUTH');
    if (this.#needHello()) return;
    if (!this.#authOffered()) return this.#say(replies.authNeedsTls());
    if (this.#session.client.user !== undefined) return this.#say(replies.authTwice());
    if (this.#session.transaction) return this.#say(replies.authInTransaction());
    const parts = arg.trim().split(/ +/);
    const mechanism = parts[0]!.toUpperCase() as SaslMechanism;
    if (!MECHANISMS.includes(mechanism) || parts.length > 2) return this.#say(replies.authMechanism());
    this.#saslStep(saslStart(mechanism, parts[1]));
  }

  /** The client's answer to a 334: a SASL response, never a command (RFC 4954 4). */
  #saslLine(text: string) {
    const state = this.#sasl!;
    this.#sasl = undefined;
    this.#saslStep(saslContinue(state, text));
  }

  #saslStep(step: SaslStep) {
    switch (step.kind) {
      case 'challenge':
        this.#sasl = step.next;
        return this.#say(replies.authChallenge(step.challenge));
      case 'cancelled':
        this.#session.problem('AUTH cancelled by the client');
        return this.#say(replies.authCancelled());
      case 'malformed':
        this.#session.problem('AUTH response malformed', { why: step.why });
        return this.#say(replies.authMalformed());
      case 'done':
        return this.#await(this.#session.auth(step.credentials), 'AUTH');
    }
  }

  // ---- STARTTLS ----

  #starttls(arg: string) {
    const encrypted = this.#session.client.secure;
    const context = encrypted ? undefined : this.#opts.starttls?.();
    if (encrypted) return this.#say(replies.tlsActive());
    if (!context) return this.#unrecognized('STARTTLS');
    if (arg.trim() !== '') return this.#say(replies.startTlsSyntax());
    this.#say(replies.startTls());
    // RFC 3207 4.2: nothing the client pipelined behind STARTTLS counts.
    this.#lines.clear();
    const plain = this.#socket;
    // The 220 leaves in plaintext now, before the socket is handed to TLS.
    while (plain.writableCorked > 0) plain.uncork();
    plain.off('data', this.#onData);
    plain.off('close', this.#onClose);
    plain.off('timeout', this.#onTimeout);
    plain.off('end', this.#onEnd);
    plain.pause();
    this.#busy = true;
    const secure = new TLSSocket(plain as never, { isServer: true, secureContext: context });
    this.#socket = secure;
    // No idle timer watches the handshake, and bytes trickling in must not keep it going either: it
    // has `commandTimeout` from now, as a command line has from its first byte.
    const ms = this.#opts.commandTimeout;
    const deadline = setTimeout(
      () => secure.destroy(new Error(`TLS handshake not complete within ${ms} ms`)),
      ms,
    );
    deadline.unref();
    secure.once('close', () => clearTimeout(deadline));
    secure.on('close', this.#onClose);
    secure.on('error', (err) => {
      this.#session.problem('TLS failed', { err: { message: err.message } });
      secure.destroy();
      plain.destroy();
    });
    secure.once('secure', () => {
      clearTimeout(deadline);
      this.#session.secured();
      this.#busy = false;
      this.#watch(secure);
    });
  }
}

/**
 * `MAIL FROM:<path> params` / `RCPT TO:<path> params`. Returns the parsed address and parameters,
 * or the reason it is bad. The path is passed on as the client wrote it (no punycode or xtext
 * rewriting: the backend decides about it); a source route is dropped (RFC 5321 4.1.2, C).
 */
export function parsePath(text: string, keyword: 'FROM' | 'TO'): SmtpAddress | string {
  const colon = text.indexOf(':');
  if (colon < 0) return `Syntax: ${keyword === 'FROM' ? 'MAIL FROM:<address>' : 'RCPT TO:<address>'}`;
  const head = text.slice(0, colon).replace(/\s+/g, ' ').trim().toUpperCase();
  if (head !== (keyword === 'FROM' ? 'MAIL FROM' : 'RCPT TO'))
    return `Syntax: ${keyword === 'FROM' ? 'MAIL FROM:<address>' : 'RCPT TO:<address>'}`;
  const rest = text.slice(colon + 1).trim();
  if (rest[0] !== '<') return 'Bad address syntax: the address must be in <>';
  const close = rest.indexOf('>');
  if (close < 0) return 'Bad address syntax: the address must be in <>';
  let address = rest.slice(1, close);
  if (address.includes('<')) return 'Bad address syntax';
  address = address.replace(/^@[^\s,:@]+(?:,@[^\s,:@]+)*:/, '');
  if (CONTROL.test(address) || /\s/.test(address)) return 'Bad address syntax';
  if (address !== '' && !(keyword === 'TO' && address.toLowerCase() === 'postmaster')) {
    const at = address.lastIndexOf('@');
    if (at <= 0 || at === address.length - 1) return 'Bad address syntax';
    if (address.length > 254) return 'Address too long';
  }
  const args: Record<string, string | true> = {};
  const tail = rest.slice(close + 1);
  if (tail !== '' && tail[0] !== ' ') return 'Bad address syntax';
  for (const param of tail.split(' ')) {
    if (param === '') continue;
    const eq = param.indexOf('=');
    const key = (eq < 0 ? param : param.slice(0, eq)).toUpperCase();
    if (key === '' || CONTROL.test(param) || hasRawBytes(param)) return 'Bad parameter syntax';
    if (key in args) return `Duplicate ${key} parameter`;
    args[key] = eq < 0 ? true : param.slice(eq + 1);
  }
  return { address, args };
}
