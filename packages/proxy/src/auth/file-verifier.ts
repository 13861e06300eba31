// `verify: file`: an htpasswd file of bcrypt lines (`htpasswd -B`: `user:$2y$...`), checked with
// bcryptjs (pure JavaScript, async: a check yields to the event loop). Re-read when the file changes
// and on SIGHUP; a file that cannot be read keeps the users last read (and says so). Lines that are
// not bcrypt (MD5, SHA1, crypt) are skipped with a warning: we do not verify weak hashes.
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import bcrypt from 'bcryptjs';
import type { Logger } from '../logger.js';
import type { AuthRequest, AuthResult, Verifier } from './verifier.js';

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
/** Compared against for unknown users, so that they take as long as known ones. */
const DUMMY = '$2b$10$5JyBOAWCVmUIVFWt2fANfeBoXySgJIbdU5Kj33J4ErsHlzACGsTe2';

export interface ParsedHtpasswd {
  users: Map<string, string>;
  /** 1-based line numbers that were skipped, and why. */
  skipped: Array<{ line: number; why: string }>;
}

export function parseHtpasswd(text: string): ParsedHtpasswd {
  const users = new Map<string, string>();
  const skipped: ParsedHtpasswd['skipped'] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) {
      skipped.push({ line: i + 1, why: 'not user:hash' });
      return;
    }
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!BCRYPT.test(hash)) {
      skipped.push({ line: i + 1, why: 'not a bcrypt hash' });
      return;
    }
    users.set(user, hash);
  });
  return { users, skipped };
}

export class FileVerifier implements Verifier {
  readonly name = 'file';
  readonly #path: string;
  readonly #log: Logger;
  #users = new Map<string, string>();
  #watcher: FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;

  constructor(path: string, log: Logger) {
    this.#path = path;
    this.#log = log;
    this.reload();
    this.#watch();
  }

  get users(): number {
    return this.#users.size;
  }

  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.#path, 'utf8');
    } catch (err) {
      this.#log.error(
        { file: this.#path, err: { message: (err as Error).message }, users: this.#users.size },
        'auth file unreadable; keeping the users read before',
      );
      return;
    }
    const parsed = parseHtpasswd(text);
    for (const s of parsed.skipped)
      this.#log.warn({ file: this.#path, line: s.line, why: s.why }, 'auth file line skipped');
    this.#users = parsed.users;
    this.#log.info({ file: this.#path, users: parsed.users.size }, 'auth file read');
  }

  /** Editors and `htpasswd` replace the file: watch it, and watch again after a rename. */
  #watch(): void {
    try {
      this.#watcher = watch(this.#path, { persistent: false }, () => {
        clearTimeout(this.#debounce);
        this.#debounce = setTimeout(() => {
          this.reload();
          this.#watcher?.close();
          this.#watch();
        }, 100);
        this.#debounce.unref();
      });
      this.#watcher.on('error', () => this.#watcher?.close());
    } catch {
      // The file is missing now; SIGHUP reads it again.
    }
  }

  async verify(req: AuthRequest): Promise<AuthResult> {
    const hash = this.#users.get(req.user);
    const ok = await bcrypt.compare(req.password, hash ?? DUMMY);
    return ok && hash !== undefined ? { kind: 'ok', user: req.user } : { kind: 'fail' };
  }

  close(): void {
    clearTimeout(this.#debounce);
    this.#watcher?.close();
  }
}
