// Suspensions in Redis: one HASH user -> JSON record under `<prefix>:senders:{suspended}` (one hash
// tag: every script touches one key). Scripts in ./lua/senders, one file per command, registered
// under versioned names so two releases can share one Redis.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  asLedgerError,
  closeClient,
  createClient,
  type LedgerClient,
  type RedisTarget,
  runScript,
  withTimeout,
} from './connect.js';
import { LedgerError } from './errors.js';
import { inForce, type Suspension, type Suspensions } from './suspensions.js';

export * from './suspensions.js';

/** Bump when a senders script's keys, arguments or replies change. */
export const SENDERS_SCRIPT_VERSION = 1;

export type SendersScript = 'suspend' | 'suspension' | 'lift' | 'suspensions';

export function sendersCommand(name: SendersScript, version = SENDERS_SCRIPT_VERSION): string {
  const camel = name.replace(/(^|-)([a-z])/g, (_, _dash: string, c: string) => c.toUpperCase());
  return `smtpLbSenders${camel}V${version}`;
}

function luaDir(): string {
  const beside = fileURLToPath(new URL('./lua/senders/', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../../src/lua/senders/', import.meta.url));
}

export function loadSendersScripts(): Array<{ name: SendersScript; numberOfKeys: number; lua: string }> {
  const dir = luaDir();
  return readdirSync(dir)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
      if (!m) throw new Error(`senders: Lua file name ${file} is not <name>-<numKeys>.lua`);
      return {
        name: m[1] as SendersScript,
        numberOfKeys: Number(m[2]),
        lua: readFileSync(dir + file, 'utf8'),
      };
    });
}

export interface RedisSuspensionsOptions {
  redis: RedisTarget;
  nodeId: string;
  keyPrefix: string;
  /** What is suspended, part of the key: 'senders' (default, users) or 'hosts' (outbound lock-outs). */
  kind?: string;
  /** Bound on one round trip; default 1000 ms. */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  onError?: (err: LedgerError) => void;
}

function parseRecord(user: string, json: unknown): Suspension {
  try {
    const r = JSON.parse(String(json)) as Partial<Suspension>;
    return {
      user,
      since: typeof r.since === 'number' ? r.since : 0,
      reason: typeof r.reason === 'string' ? r.reason : '',
      node: typeof r.node === 'string' ? r.node : '',
      ...(typeof r.until === 'number' ? { until: r.until } : {}),
    };
  } catch {
    return { user, since: 0, reason: 'unreadable record', node: '' };
  }
}

export class RedisSuspensions implements Suspensions {
  readonly mode = 'redis' as const;
  readonly #client: LedgerClient;
  readonly #o: RedisSuspensionsOptions;
  readonly #key: string;
  /** What this node last saw, for answers while Redis is unreachable. */
  readonly #seen = new Map<string, Suspension>();
  #closed = false;

  private constructor(client: LedgerClient, o: RedisSuspensionsOptions) {
    this.#client = client;
    this.#o = o;
    this.#key = `${o.keyPrefix}:${o.kind ?? 'senders'}:{suspended}`;
    client.on('error', (err: Error) => this.#failed('connection', err));
  }

  static async create(o: RedisSuspensionsOptions): Promise<RedisSuspensions> {
    const connectTimeoutMs = o.connectTimeoutMs ?? 5000;
    const client = createClient(o.redis, {
      subscriber: false,
      connectionName: `smtp-lb:${o.nodeId}:${o.kind ?? 'senders'}`,
      connectTimeoutMs,
    });
    for (const s of loadSendersScripts()) {
      client.defineCommand(sendersCommand(s.name), { numberOfKeys: s.numberOfKeys, lua: s.lua });
    }
    const self = new RedisSuspensions(client, o);
    if (client.status !== 'ready') {
      try {
        await withTimeout(
          new Promise<void>((resolve) => client.once('ready', () => resolve())),
          connectTimeoutMs,
          'connect',
        );
      } catch (err) {
        await self.close();
        throw new LedgerError(
          'LEDGER_UNAVAILABLE',
          `senders: Redis unreachable: ${(err as Error).message}`,
          'create',
          {
            cause: err,
          },
        );
      }
    }
    return self;
  }

  async suspend(s: Suspension): Promise<boolean> {
    this.#seen.set(s.user, s);
    const record = JSON.stringify({ since: s.since, reason: s.reason, node: s.node, until: s.until });
    // An expired record still in the hash is replaced (HSETNX would keep it); one in force is kept.
    const old = await this.#run('suspension', [this.#key, s.user]);
    if (old[0] === 1) {
      if (inForce(parseRecord(s.user, old[1]))) return false;
      await this.#run('lift', [this.#key, s.user]);
    }
    const [code] = await this.#run('suspend', [this.#key, s.user, record]);
    return code === 1;
  }

  async get(user: string): Promise<Suspension | undefined> {
    let reply: unknown[];
    try {
      reply = await this.#run('suspension', [this.#key, user]);
    } catch {
      const seen = this.#seen.get(user);
      return inForce(seen) ? seen : undefined;
    }
    if (reply[0] !== 1) {
      this.#seen.delete(user);
      return undefined;
    }
    const s = parseRecord(user, reply[1]);
    if (!inForce(s)) {
      this.#seen.delete(user);
      return undefined;
    }
    this.#seen.set(user, s);
    return s;
  }

  async list(): Promise<Suspension[]> {
    const reply = await this.#run('suspensions', [this.#key]);
    const out: Suspension[] = [];
    for (let i = 1; i + 1 < reply.length; i += 2) out.push(parseRecord(String(reply[i]), reply[i + 1]));
    return out.filter((s) => inForce(s)).sort((a, b) => a.since - b.since);
  }

  async lift(user: string): Promise<boolean> {
    const [code] = await this.#run('lift', [this.#key, user]);
    this.#seen.delete(user);
    return code === 1;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await closeClient(this.#client, this.#o.commandTimeoutMs ?? 1000);
  }

  async #run(name: SendersScript, args: string[]): Promise<unknown[]> {
    try {
      return await runScript(
        this.#client,
        sendersCommand(name),
        args,
        this.#o.commandTimeoutMs ?? 1000,
        name,
      );
    } catch (err) {
      throw this.#failed(name, err);
    }
  }

  #failed(command: string, err: unknown): LedgerError {
    const e = asLedgerError(command, err);
    if (!this.#closed) this.#o.onError?.(e);
    return e;
  }
}
