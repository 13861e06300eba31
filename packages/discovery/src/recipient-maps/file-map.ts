// A recipient map from a Postfix-style file (map-file-parser.ts), held in memory. Re-read on
// reload() (SIGHUP) and when the file changes (stat polled: editors and config managers replace
// files by rename, which an inotify watch on the old inode misses). A file that cannot be read
// keeps the last good table; one never read leaves the map down, so lookups fail (451), never 550.
import { type Stats, unwatchFile, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseMapFile } from './map-file-parser.js';
import type { DriverState, MapDriver, MapHit, MapLogger } from './types.js';

export interface FileMapOptions {
  path: string;
  logger?: MapLogger;
  /** How often the file's stat is compared (default 1 s). */
  watchIntervalMs?: number;
  /** After each successful (re-)read: the map's cache must forget old answers. */
  onChange?: () => void;
}

/** At most this many problem lines are logged per read. */
const PROBLEMS_LOGGED = 20;

export class FileMap implements MapDriver {
  readonly kind = 'file' as const;
  readonly #opts: FileMapOptions;
  #entries: Map<string, string> | undefined;
  #error: string | undefined;
  #reading: Promise<void> | undefined;
  #again = false;
  #closed = false;
  readonly #onStat = (curr: Stats, prev: Stats) => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) void this.reload();
  };

  private constructor(opts: FileMapOptions) {
    this.#opts = opts;
  }

  /** Reads the file once (a failure leaves the map down and is logged) and starts watching it. */
  static async open(opts: FileMapOptions): Promise<FileMap> {
    const map = new FileMap(opts);
    await map.reload();
    watchFile(opts.path, { interval: opts.watchIntervalMs ?? 1000, persistent: false }, map.#onStat);
    return map;
  }

  async lookup(keys: readonly string[]): Promise<MapHit | undefined> {
    const entries = this.#entries;
    if (!entries) throw new Error(`map file ${this.#opts.path} not read: ${this.#error ?? 'not yet'}`);
    for (const key of keys) {
      const value = entries.get(key);
      if (value !== undefined) return { key, value };
    }
    return undefined;
  }

  state(): DriverState {
    const entries = this.#entries?.size;
    if (entries === undefined) return { up: false, detail: this.#error ?? 'not read yet' };
    return {
      up: true,
      entries,
      ...(this.#error ? { detail: `serving the last good read; ${this.#error}` } : {}),
    };
  }

  /** Re-reads now; a read already running is followed by one more, so no change is missed. */
  reload(): Promise<void> {
    if (this.#reading) {
      this.#again = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      do {
        this.#again = false;
        await this.#read();
      } while (this.#again && !this.#closed);
      this.#reading = undefined;
    })();
    return this.#reading;
  }

  async #read(): Promise<void> {
    const { path, logger } = this.#opts;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      this.#error = `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
      logger?.error({ path, err: { message: this.#error } }, 'recipient map file unreadable');
      return;
    }
    const { entries, problems } = parseMapFile(text);
    for (const p of problems.slice(0, PROBLEMS_LOGGED)) {
      logger?.warn({ path, line: p.line, problem: p.message }, 'recipient map file: line skipped');
    }
    if (problems.length > PROBLEMS_LOGGED) {
      logger?.warn(
        { path, more: problems.length - PROBLEMS_LOGGED },
        'recipient map file: more lines skipped',
      );
    }
    this.#entries = entries;
    this.#error = undefined;
    logger?.info({ path, entries: entries.size, skipped: problems.length }, 'recipient map file read');
    this.#opts.onChange?.();
  }

  async close(): Promise<void> {
    this.#closed = true;
    unwatchFile(this.#opts.path, this.#onStat);
    await this.#reading;
  }
}
