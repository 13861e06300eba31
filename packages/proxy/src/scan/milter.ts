// A milter (rspamd's proxy worker, OpenDKIM, clamav-milter...) as a content scanner: one kept
// connection per client session (connect and HELO once, then MAIL, RCPT, DATA, the header fields
// parsed out of the stream, end of headers, body chunks and end of body per message), the steps the
// milter negotiated away left out. Modification requests cannot be applied while streaming: they are
// reported in the verdict. A connection in an unknown state (timeout, abort mid-message) is dropped
// and the next message opens a new one.
import { HeaderSplitter, type SplitResult } from './milter/headers.js';
import { type MilterAnswer, MilterConnection } from './milter/milter-client.js';
import {
  Cmd,
  connectPacket,
  cstrings,
  encodePacket,
  MAX_BODY_CHUNK,
  macroPacket,
  Proto,
  parseReplyCode,
  Rep,
} from './milter/packets.js';
import {
  type ScanEnvelope,
  ScanError,
  type ScanJob,
  type Scanner,
  type ScannerSession,
  type ScanVerdict,
} from './scanner.js';

export interface MilterDriverOptions {
  name: string;
  host: string;
  port: number;
  /** Connect and each reply. */
  timeout: number;
}

/** A reply that decides the message (or, at connect or HELO, every message of the session). */
function decisive(a: MilterAnswer): ScanVerdict | undefined {
  const base = { modifications: a.modifications };
  switch (a.code) {
    case Rep.continue:
    case Rep.skip:
      return undefined;
    case Rep.accept:
      return { ...base, action: 'accept', said: 'accept' };
    case Rep.reject:
      return { ...base, action: 'reject', said: 'reject' };
    case Rep.tempfail:
      return { ...base, action: 'defer', said: 'tempfail' };
    case Rep.discard:
      return { ...base, action: 'discard', said: 'discard' };
    case Rep.connectionFail:
    case Rep.shutdown:
      return { ...base, action: 'defer', said: a.code === Rep.shutdown ? 'shutdown' : 'connection failure' };
    case Rep.replyCode: {
      const reply = parseReplyCode(a.data);
      if (!reply) throw new ScanError('EPROTOCOL', 'milter sent a custom reply that is not a 4xx/5xx reply');
      return { ...base, action: reply.code >= 500 ? 'reject' : 'defer', said: `reply ${reply.code}`, reply };
    }
    default:
      throw new ScanError('EPROTOCOL', `milter reply '${a.code}' where none was expected`);
  }
}

const STRICTNESS = { accept: 0, defer: 1, discard: 2, reject: 3 } as const;

class MilterSession implements ScannerSession {
  readonly #opts: MilterDriverOptions;
  #conn: MilterConnection | undefined;
  /** HELO name last sent on #conn. */
  #helo: string | undefined;
  /** A verdict given at connect or HELO: it applies to every message on this connection. */
  #sessionVerdict: ScanVerdict | undefined;
  #closed = false;

  constructor(opts: MilterDriverOptions) {
    this.#opts = opts;
  }

  begin(env: ScanEnvelope): ScanJob {
    return new MilterJob(this, env);
  }

  /** A negotiated connection that has seen connect and this HELO; a decided verdict if the milter gave one. */
  async ready(env: ScanEnvelope): Promise<{ conn: MilterConnection; verdict?: ScanVerdict }> {
    if (this.#closed) throw new ScanError('EABORTED', 'session closed');
    let conn = this.#conn;
    if (!conn || conn.closed) {
      this.#helo = undefined;
      this.#sessionVerdict = undefined;
      conn = await MilterConnection.open(this.#opts);
      this.#conn = conn;
      if (this.#closed) {
        conn.destroy();
        throw new ScanError('EABORTED', 'session closed');
      }
      if (!conn.has(Proto.noConnect)) {
        await conn.request(
          macroPacket(Cmd.connect, {
            j: env.localHostname,
            '{daemon_name}': 'smtp-lb',
            '{client_addr}': env.clientAddress,
            '{client_port}': String(env.clientPort),
            '{client_name}': 'unknown',
            _: `unknown [${env.clientAddress}]`,
          }),
          false,
        );
        const a = await conn.request(
          connectPacket('unknown', env.clientAddress, env.clientPort),
          !conn.has(Proto.noReplyConnect),
        );
        if (a) this.#sessionVerdict = decisive(a);
      }
    }
    if (this.#sessionVerdict) return { conn, verdict: this.#sessionVerdict };
    if (this.#helo !== env.helo && env.helo !== '' && !conn.has(Proto.noHelo)) {
      if (env.secure) await conn.request(macroPacket(Cmd.helo, { '{tls_version}': 'TLS' }), false);
      const a = await conn.request(encodePacket(Cmd.helo, cstrings(env.helo)), !conn.has(Proto.noReplyHelo));
      this.#helo = env.helo;
      if (a) this.#sessionVerdict = decisive(a);
    }
    return { conn, verdict: this.#sessionVerdict };
  }

  /** The message ended before end of body: the milter forgets it (SMFIC_ABORT, no reply). */
  async abortMessage(conn: MilterConnection): Promise<void> {
    if (!conn.closed) await conn.request(encodePacket(Cmd.abort), false);
  }

  /** A connection whose state we no longer know. */
  drop(conn: MilterConnection | undefined): void {
    conn?.destroy();
    if (this.#conn === conn) this.#conn = undefined;
  }

  close(): void {
    this.#closed = true;
    const conn = this.#conn;
    this.#conn = undefined;
    if (!conn || conn.closed) return;
    conn.request(encodePacket(Cmd.quit), false).then(
      () => conn.destroy(),
      () => conn.destroy(),
    );
  }
}

class MilterJob implements ScanJob {
  readonly #session: MilterSession;
  readonly #env: ScanEnvelope;
  #conn: MilterConnection | undefined;
  /** Every step runs after the previous one: the milter answers one command at a time. */
  #chain: Promise<void>;
  #verdict: ScanVerdict | undefined;
  readonly #headers = new HeaderSplitter();
  #eohSent = false;
  #skipBody = false;
  #aborted = false;

  constructor(session: MilterSession, env: ScanEnvelope) {
    this.#session = session;
    this.#env = env;
    this.#chain = this.#start();
    this.#chain.catch(() => {});
  }

  async #start(): Promise<void> {
    const env = this.#env;
    const { conn, verdict } = await this.#session.ready(env);
    this.#conn = conn;
    if (verdict) {
      this.#verdict = verdict;
      return;
    }
    if (!conn.has(Proto.noMail)) {
      const macros: Record<string, string> = { i: env.queueId, '{mail_addr}': env.from };
      if (env.user !== undefined) macros['{auth_authen}'] = env.user;
      await conn.request(macroPacket(Cmd.mail, macros), false);
      const args = Object.entries(env.mailArgs).map(([k, v]) => (v === true ? k : `${k}=${v}`));
      if (await this.#step(encodePacket(Cmd.mail, cstrings(`<${env.from}>`, ...args)), Proto.noReplyMail))
        return;
    }
    if (!conn.has(Proto.noRcpt)) {
      let refused = 0;
      let strictest: ScanVerdict | undefined;
      for (const rcpt of env.rcpts) {
        await conn.request(macroPacket(Cmd.rcpt, { '{rcpt_addr}': rcpt }), false);
        const a = await conn.request(
          encodePacket(Cmd.rcpt, cstrings(`<${rcpt}>`)),
          !conn.has(Proto.noReplyRcpt),
        );
        const v = a ? decisive(a) : undefined;
        if (!v) continue;
        if (v.action === 'accept' || v.action === 'discard') {
          this.#verdict = v;
          return;
        }
        // A refused recipient refuses only itself; the message is refused when every one is.
        refused++;
        if (!strictest || STRICTNESS[v.action] > STRICTNESS[strictest.action]) strictest = v;
      }
      if (strictest && refused === env.rcpts.length) {
        this.#verdict = strictest;
        return;
      }
    }
    if (conn.has(Proto.noData)) return;
    await this.#step(encodePacket(Cmd.data), Proto.noReplyData);
  }

  /** Sends one command; true when its answer decided the message. */
  async #step(packet: Buffer, noReply: number): Promise<boolean> {
    const conn = this.#conn!;
    const a = await conn.request(packet, !conn.has(noReply));
    if (!a) return false;
    if (a.code === Rep.skip) {
      this.#skipBody = true;
      return false;
    }
    this.#verdict = decisive(a);
    return this.#verdict !== undefined;
  }

  push(chunk: Buffer): Promise<void> {
    this.#chain = this.#chain.then(() => this.#content(this.#headers.push(chunk)));
    return this.#chain;
  }

  async #content(part: SplitResult): Promise<void> {
    if (this.#verdict || this.#aborted) return;
    const conn = this.#conn!;
    if (!conn.has(Proto.noHeaders)) {
      const lead = conn.has(Proto.headerLeadingSpace);
      for (const f of part.fields) {
        const value = lead ? f.value : f.value.replace(/^ /, '');
        if (await this.#step(encodePacket(Cmd.header, cstrings(f.name, value)), Proto.noReplyHeader)) return;
      }
    }
    if (part.eoh && !this.#eohSent) {
      this.#eohSent = true;
      if (!conn.has(Proto.noEoh) && (await this.#step(encodePacket(Cmd.headersEnd), Proto.noReplyEoh)))
        return;
    }
    if (this.#skipBody || conn.has(Proto.noBody)) return;
    for (const buf of part.body) {
      for (let off = 0; off < buf.length; off += MAX_BODY_CHUNK) {
        const piece = buf.subarray(off, Math.min(buf.length, off + MAX_BODY_CHUNK));
        if (await this.#step(encodePacket(Cmd.body, piece), Proto.noReplyBody)) return;
        if (this.#skipBody) return;
      }
    }
  }

  end(): Promise<ScanVerdict> {
    const run = this.#chain.then(async (): Promise<ScanVerdict> => {
      await this.#content(this.#headers.end());
      const conn = this.#conn!;
      if (this.#verdict) {
        // Decided before end of body: the milter forgets this message.
        await this.#session.abortMessage(conn);
        return this.#verdict;
      }
      const a = await conn.request(encodePacket(Cmd.bodyEnd), true);
      const v = decisive(a!);
      return v ?? { action: 'accept' as const, said: 'continue', modifications: a!.modifications };
    });
    return run.catch((err: unknown) => {
      this.#session.drop(this.#conn);
      throw err;
    });
  }

  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    // Mid-message the connection is in no state another message can use (also one still opening).
    this.#session.drop(this.#conn);
    this.#chain.then(
      () => this.#session.drop(this.#conn),
      () => this.#session.drop(this.#conn),
    );
  }
}

export class MilterScanner implements Scanner {
  readonly kind = 'milter';
  readonly name: string;
  readonly #opts: MilterDriverOptions;
  readonly #sessions = new Set<MilterSession>();

  constructor(opts: MilterDriverOptions) {
    this.name = opts.name;
    this.#opts = opts;
  }

  open(_sessionId: string): ScannerSession {
    const s = new MilterSession(this.#opts);
    this.#sessions.add(s);
    return {
      begin: (env) => s.begin(env),
      close: () => {
        this.#sessions.delete(s);
        s.close();
      },
    };
  }

  async close(): Promise<void> {
    for (const s of this.#sessions) s.close();
    this.#sessions.clear();
  }
}
