// The scan stage of one client session: every message of a listener with `scan` streams to each of
// its scanners while it streams to the backend, and our final dot waits for their verdicts. Here the
// rules that are the same for every driver: the scanner's `timeout` (for each chunk it is handed and
// for the verdict), `maxSize`, `onError`, the strictest verdict winning, the replies, the metrics and
// one log line per scanner and message. A slow scanner slows the client: a chunk goes on to the
// backend only once every scanner has taken it.
import type { ScannerConfig } from '@smtp-lb/config';
import type { Reply } from '@smtp-lb/upstream';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { replies } from '../replies.js';
import type { Client, Transaction } from '../transaction.js';
import {
  type ScanEnvelope,
  ScanError,
  type ScanJob,
  type Scanner,
  type ScannerSession,
  type ScanVerdict,
} from './scanner.js';

/** A scanner of the node with its settings. */
export interface ConfiguredScanner {
  config: ScannerConfig;
  scanner: Scanner;
}

export interface ScanStageDeps {
  metrics: Metrics;
  /** Called the first time a scanner asks for a change we cannot make (one warning per scanner). */
  modificationsSeen(scanner: string): boolean;
}

/** How strict a reply is: a refusal beats a deferral beats acceptance. */
function rank(r: Reply | undefined): number {
  if (!r) return 0;
  return r.code >= 500 ? 3 : 1;
}

/** The client's reply for a scanner's verdict; undefined to accept. */
function verdictReply(v: ScanVerdict): Reply | undefined {
  switch (v.action) {
    case 'accept':
      return undefined;
    case 'reject':
      return v.reply && v.reply.code >= 500 ? v.reply : replies.scanReject(v.text);
    case 'defer':
      return v.reply && v.reply.code >= 400 && v.reply.code < 500 ? v.reply : replies.scanDefer(v.text);
    case 'discard':
      return replies.scanDiscard();
  }
}

function errorReply(onError: ScannerConfig['onError']): Reply | undefined {
  if (onError === 'defer') return replies.scanUnavailable();
  if (onError === 'reject') return replies.scanFailedReject();
  return undefined;
}

/** One scanner's part in one message. */
class Part {
  job: ScanJob | undefined;
  bytes = 0;
  /** Set once: the reply this scanner gives the message (undefined: accept). */
  done = false;
  reply: Reply | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly c: ConfiguredScanner,
    readonly started: number,
  ) {}
}

export class MessageScan {
  readonly #parts: Part[];
  readonly #deps: ScanStageDeps;
  readonly #log: Logger;
  #ended = false;

  constructor(parts: Part[], deps: ScanStageDeps, log: Logger) {
    this.#parts = parts;
    this.#deps = deps;
    this.#log = log;
  }

  /** Resolves when every scanner still scanning has taken `chunk`; never rejects. */
  push(chunk: Buffer): Promise<unknown> | undefined {
    const waits: Promise<unknown>[] = [];
    for (const p of this.#parts) {
      if (p.done || !p.job) continue;
      p.bytes += chunk.length;
      if (p.bytes > p.c.config.maxSize) this.#oversize(p);
      else waits.push(this.#bounded(p, p.job.push(chunk)));
    }
    if (waits.length === 0) return undefined;
    return waits.length === 1 ? waits[0] : Promise.all(waits);
  }

  /** The client's final dot: the strictest reply of all scanners, undefined when all accept. */
  async end(): Promise<Reply | undefined> {
    this.#ended = true;
    await Promise.all(
      this.#parts.map(async (p) => {
        if (p.done || !p.job) return;
        const v = await this.#bounded(p, p.job.end());
        if (v && !p.done) this.#verdict(p, v);
      }),
    );
    let strictest: Reply | undefined;
    for (const p of this.#parts) if (rank(p.reply) > rank(strictest)) strictest = p.reply;
    return strictest;
  }

  /** The message went away (client gone, backend failed): nothing more is scanned. */
  abort(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const p of this.#parts) {
      if (p.done) continue;
      p.done = true;
      clearTimeout(p.timer);
      p.job?.abort();
    }
  }

  /** `work`, bounded by the scanner's timeout; a failure or timeout settles the part by onError. */
  async #bounded<T>(p: Part, work: Promise<T>): Promise<T | undefined> {
    const ms = p.c.config.timeout;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ScanError('ETIMEOUT', `no answer from the scanner within ${ms} ms`)),
        ms,
      );
    });
    p.timer = timer;
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      this.#failed(p, err as ScanError);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  #failed(p: Part, err: ScanError): void {
    if (p.done) return;
    p.done = true;
    p.job?.abort();
    const { name, onError } = p.c.config;
    p.reply = errorReply(onError);
    this.#deps.metrics.scanVerdicts.inc({ scanner: name, action: 'error' });
    this.#deps.metrics.scanDuration.observe({ scanner: name }, (performance.now() - p.started) / 1000);
    this.#log.warn(
      { scanner: name, err: { code: err.code ?? 'ERROR', message: err.message }, onError },
      'content scanner failed',
    );
  }

  #oversize(p: Part): void {
    p.done = true;
    p.job?.abort();
    const { name, maxSize } = p.c.config;
    this.#deps.metrics.scanVerdicts.inc({ scanner: name, action: 'oversize' });
    this.#log.info({ scanner: name, maxSize }, 'message larger than the scanner takes: passed unscanned');
  }

  #verdict(p: Part, v: ScanVerdict): void {
    p.done = true;
    const name = p.c.config.name;
    const ms = performance.now() - p.started;
    p.reply = verdictReply(v);
    const { metrics } = this.#deps;
    metrics.scanVerdicts.inc({ scanner: name, action: v.action });
    metrics.scanDuration.observe({ scanner: name }, ms / 1000);
    if (v.modifications.length > 0) {
      metrics.scanModifications.inc({ scanner: name });
      if (this.#deps.modificationsSeen(name)) {
        this.#log.warn(
          { scanner: name, modifications: v.modifications },
          'the scanner asks for changes to messages, which streaming cannot apply: counted in smtp_lb_scan_modifications_total, not logged again',
        );
      }
    }
    const entry: Record<string, unknown> = {
      scanner: name,
      action: v.action,
      said: v.said,
      ms: Math.round(ms),
    };
    if (v.score !== undefined) entry.score = v.score;
    if (v.requiredScore !== undefined) entry.requiredScore = v.requiredScore;
    if (v.symbols) entry.symbols = v.symbols;
    if (v.modifications.length > 0) entry.modifications = v.modifications;
    if (p.reply) entry.code = p.reply.code;
    this.#log.info(
      entry,
      v.action === 'discard' ? 'message discarded by the scanner: refused' : 'message scanned',
    );
  }
}

/** The scanners of one client session; a milter keeps its connection across the session's messages. */
export class SessionScan {
  readonly #scanners: ConfiguredScanner[];
  readonly #deps: ScanStageDeps;
  readonly #log: Logger;
  readonly #sessionId: string;
  readonly #localHostname: string;
  readonly #sessions = new Map<string, ScannerSession>();

  constructor(
    scanners: ConfiguredScanner[],
    deps: ScanStageDeps,
    client: { id: string; localHostname: string },
    log: Logger,
  ) {
    this.#scanners = scanners;
    this.#deps = deps;
    this.#log = log;
    this.#sessionId = client.id;
    this.#localHostname = client.localHostname;
  }

  /** DATA begins: one job per scanner (none for a message whose SIZE is above its maxSize). */
  begin(tx: Transaction, client: Client): MessageScan {
    const env: ScanEnvelope = {
      sessionId: this.#sessionId,
      queueId: tx.id,
      clientAddress: client.address,
      clientPort: client.port,
      helo: client.helo,
      localHostname: this.#localHostname,
      user: client.user,
      from: tx.mail.address,
      mailArgs: tx.mail.args,
      rcpts: tx.recipients.map((r) => r.address),
      secure: client.secure,
    };
    const declared = Number(tx.mail.args.SIZE ?? 0);
    const now = performance.now();
    const parts = this.#scanners.map((c) => {
      const p = new Part(c, now);
      if (declared > c.config.maxSize) {
        p.done = true;
        this.#deps.metrics.scanVerdicts.inc({ scanner: c.config.name, action: 'oversize' });
        this.#log.info(
          { scanner: c.config.name, maxSize: c.config.maxSize, size: declared },
          'message larger than the scanner takes: passed unscanned',
        );
        return p;
      }
      let s = this.#sessions.get(c.config.name);
      if (!s) {
        s = c.scanner.open(this.#sessionId);
        this.#sessions.set(c.config.name, s);
      }
      p.job = s.begin(env);
      return p;
    });
    return new MessageScan(parts, this.#deps, this.#log);
  }

  close(): void {
    for (const s of this.#sessions.values()) s.close();
    this.#sessions.clear();
  }
}
