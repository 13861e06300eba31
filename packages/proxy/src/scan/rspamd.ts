// rspamd over HTTP: `POST /checkv2` to its normal worker, the message streamed as the chunked request
// body while it streams to the backend, the envelope as request headers (without them rspamd loses
// its IP, HELO and sender checks). undici keeps a pool of connections per scanner.
import { PassThrough } from 'node:stream';
import { Pool } from 'undici';
import {
  type ScanEnvelope,
  ScanError,
  type ScanJob,
  type Scanner,
  type ScannerSession,
  type ScanVerdict,
  safeReplyText,
} from './scanner.js';

export interface RspamdDriverOptions {
  name: string;
  url: string;
  /** Bounds the wait for the answer's headers and body. */
  timeout: number;
  /** Symbols (highest score first) kept for the log line. */
  topSymbols?: number;
}

const MAX_ANSWER = 1024 * 1024;

interface CheckV2Answer {
  action?: unknown;
  score?: unknown;
  required_score?: unknown;
  symbols?: unknown;
  messages?: { smtp_message?: unknown };
}

/** rspamd's actions and what they mean for a message we cannot change any more. */
const ACTIONS: Record<string, Pick<ScanVerdict, 'action' | 'modifications'>> = {
  'no action': { action: 'accept', modifications: [] },
  'add header': { action: 'accept', modifications: ['add header'] },
  'rewrite subject': { action: 'accept', modifications: ['rewrite subject'] },
  greylist: { action: 'defer', modifications: [] },
  'soft reject': { action: 'defer', modifications: [] },
  reject: { action: 'reject', modifications: [] },
};

/** The verdict of one /checkv2 answer; a ScanError when it is not one rspamd would send. */
export function parseCheckV2(text: string, topSymbols = 5): ScanVerdict {
  let json: CheckV2Answer;
  try {
    json = JSON.parse(text) as CheckV2Answer;
  } catch {
    throw new ScanError(
      'EPROTOCOL',
      `rspamd answered something that is not JSON: ${safeReplyText(text, 80)}`,
    );
  }
  if (json === null || typeof json !== 'object' || typeof json.action !== 'string')
    throw new ScanError('EPROTOCOL', 'rspamd answered without an action');
  const mapped = ACTIONS[json.action];
  if (!mapped)
    throw new ScanError('EPROTOCOL', `rspamd answered an unknown action: ${safeReplyText(json.action, 40)}`);
  const verdict: ScanVerdict = { ...mapped, modifications: [...mapped.modifications], said: json.action };
  if (typeof json.score === 'number') verdict.score = json.score;
  if (typeof json.required_score === 'number') verdict.requiredScore = json.required_score;
  if (json.symbols && typeof json.symbols === 'object') {
    verdict.symbols = Object.entries(json.symbols as Record<string, { score?: unknown }>)
      .map(([name, s]) => ({ name, score: typeof s?.score === 'number' ? s.score : 0 }))
      .sort((a, b) => b.score - a.score)
      .slice(0, topSymbols)
      .map((s) => safeReplyText(s.name, 64));
  }
  const msg = json.messages?.smtp_message;
  if (typeof msg === 'string' && safeReplyText(msg) !== '') verdict.text = safeReplyText(msg);
  return verdict;
}

function headersFor(env: ScanEnvelope): Record<string, string | string[]> {
  const h: Record<string, string | string[]> = {
    IP: env.clientAddress,
    // No reverse DNS on our path: rspamd gets what Postfix would give a milter without a name.
    Hostname: 'unknown',
    From: env.from,
    'Queue-Id': env.queueId,
    'MTA-Name': env.localHostname,
  };
  if (env.helo !== '') h.Helo = env.helo;
  if (env.rcpts.length > 0) h.Rcpt = env.rcpts;
  if (env.user !== undefined) h.User = env.user;
  for (const v of Object.values(h)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (/[\r\n\0]/.test(one)) throw new ScanError('EPROTOCOL', 'envelope value with CR, LF or NUL');
    }
  }
  return h;
}

class RspamdJob implements ScanJob {
  readonly #body = new PassThrough({ highWaterMark: 64 * 1024 });
  readonly #abort = new AbortController();
  readonly #answer: Promise<ScanVerdict>;

  constructor(pool: Pool, path: string, opts: RspamdDriverOptions, env: ScanEnvelope) {
    let headers: Record<string, string | string[]>;
    try {
      headers = headersFor(env);
    } catch (err) {
      this.#answer = Promise.reject(err);
      this.#answer.catch(() => {});
      return;
    }
    this.#answer = this.#request(pool, path, opts, headers);
    // The answer may fail before anyone awaits it (rspamd down while content still streams).
    this.#answer.catch(() => {});
  }

  async #request(
    pool: Pool,
    path: string,
    opts: RspamdDriverOptions,
    headers: Record<string, string | string[]>,
  ): Promise<ScanVerdict> {
    let res: Awaited<ReturnType<Pool['request']>>;
    try {
      res = await pool.request({
        path,
        method: 'POST',
        headers,
        body: this.#body,
        signal: this.#abort.signal,
        headersTimeout: opts.timeout,
        bodyTimeout: opts.timeout,
      });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      const code =
        e.code === 'UND_ERR_HEADERS_TIMEOUT'
          ? 'ETIMEOUT'
          : e.code === 'UND_ERR_ABORTED'
            ? 'EABORTED'
            : 'ECONNECT';
      throw new ScanError(code, `rspamd request failed: ${e.message ?? String(err)}`, { cause: err });
    }
    let text = '';
    try {
      for await (const chunk of res.body) {
        text += (chunk as Buffer).toString('utf8');
        if (text.length > MAX_ANSWER) {
          res.body.destroy();
          throw new ScanError('EPROTOCOL', `rspamd answer over ${MAX_ANSWER} bytes`);
        }
      }
    } catch (err) {
      if (err instanceof ScanError) throw err;
      throw new ScanError('ECLOSED', `rspamd answer cut short: ${(err as Error).message}`, { cause: err });
    }
    if (res.statusCode !== 200)
      throw new ScanError('EHTTP', `rspamd answered HTTP ${res.statusCode}: ${safeReplyText(text, 120)}`);
    return parseCheckV2(text, opts.topSymbols);
  }

  push(chunk: Buffer): Promise<void> {
    if (this.#body.destroyed) return Promise.resolve();
    if (this.#body.write(chunk)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#body.off('drain', done);
        this.#body.off('close', done);
        resolve();
      };
      this.#body.on('drain', done);
      this.#body.on('close', done);
    });
  }

  end(): Promise<ScanVerdict> {
    this.#body.end();
    return this.#answer;
  }

  abort(): void {
    this.#abort.abort();
    this.#body.destroy();
  }
}

export class RspamdScanner implements Scanner {
  readonly kind = 'rspamd';
  readonly name: string;
  readonly #pool: Pool;
  readonly #path: string;
  readonly #opts: RspamdDriverOptions;

  constructor(opts: RspamdDriverOptions) {
    this.name = opts.name;
    this.#opts = opts;
    const url = new URL(opts.url);
    this.#path = `${url.pathname.replace(/\/+$/, '')}/checkv2`;
    this.#pool = new Pool(url.origin, { connections: 256, keepAliveTimeout: 30_000 });
  }

  open(_sessionId: string): ScannerSession {
    return {
      begin: (env) => new RspamdJob(this.#pool, this.#path, this.#opts, env),
      close: () => {},
    };
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}
