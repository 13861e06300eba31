// Cluster-wide per-client counters in Redis (Lua in ./lua/client-limits, one file per command,
// registered under versioned names). A session is a member of its address's and its prefix's
// ZSETs, scored by a lease expiry that this node renews every ttl/3; a node that dies stops
// counting after the ttl. Every key of one script carries the prefix's hash tag, so an address
// and its /24 or /64 land on one Redis Cluster slot. Redis trouble never refuses a client:
// counters fail open, and the error is reported.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type {
  ClientLimits,
  ClientSlot,
  OpenSessionResult,
  RateResult,
  SessionCaps,
} from './client-limits.js';
import {
  asLedgerError,
  closeClient,
  createClient,
  type LedgerClient,
  type RedisTarget,
  runScript,
  unknownReply,
  withTimeout,
} from './connect.js';
import { LedgerError, ReplyCode } from './errors.js';
import { once } from './types.js';

export * from './client-limits.js';

/** Bump when a client-limits script's keys, arguments or replies change. */
export const CLIENT_LIMITS_SCRIPT_VERSION = 1;

export type ClientLimitsScript =
  | 'session-open'
  | 'session-close'
  | 'session-renew'
  | 'rate-hit'
  | 'rate-peek'
  | 'rate-reset';

export function clientLimitsCommand(
  name: ClientLimitsScript,
  version = CLIENT_LIMITS_SCRIPT_VERSION,
): string {
  const camel = name.replace(/(^|-)([a-z])/g, (_, _dash: string, c: string) => c.toUpperCase());
  return `smtpLbClient${camel}V${version}`;
}

function luaDir(): string {
  // Copied beside dist by the package build; a dependent's bare `tsc -b` leaves only the sources.
  const beside = fileURLToPath(new URL('./lua/client-limits/', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../../src/lua/client-limits/', import.meta.url));
}

export interface ClientLimitsLuaScript {
  name: ClientLimitsScript;
  numberOfKeys: number;
  lua: string;
}

export function loadClientLimitsScripts(): ClientLimitsLuaScript[] {
  const dir = luaDir();
  return readdirSync(dir)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
      if (!m) throw new Error(`client limits: Lua file name ${file} is not <name>-<numKeys>.lua`);
      return {
        name: m[1] as ClientLimitsScript,
        numberOfKeys: Number(m[2]),
        lua: readFileSync(dir + file, 'utf8'),
      };
    });
}

export interface RedisClientLimitsOptions {
  redis: RedisTarget;
  nodeId: string;
  /** Sessions of a node that stops renewing stop counting after this. */
  leaseTtlMs: number;
  keyPrefix: string;
  /** Bound on one round trip; default 1000 ms. Past it the call fails open. */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Each failed Redis call (the answer was "allowed"). */
  onError?: (err: LedgerError) => void;
}

interface HeldSession {
  keys: [string, string];
  member: string;
}

export class RedisClientLimits implements ClientLimits {
  readonly mode = 'redis' as const;
  readonly #client: LedgerClient;
  readonly #o: RedisClientLimitsOptions;
  readonly #timeoutMs: number;
  /** Sessions this node holds, grouped by address key (one renew call per address). */
  readonly #held = new Map<string, Map<string, HeldSession>>();
  readonly #timer: NodeJS.Timeout;
  #seq = 0;
  readonly #instance = randomBytes(4).toString('hex');
  #closed = false;

  private constructor(client: LedgerClient, o: RedisClientLimitsOptions) {
    this.#client = client;
    this.#o = o;
    this.#timeoutMs = o.commandTimeoutMs ?? 1000;
    client.on('error', (err: Error) => this.#failed('connection', err));
    this.#timer = setInterval(() => void this.#renew(), Math.max(100, Math.floor(o.leaseTtlMs / 3)));
    this.#timer.unref();
  }

  static async create(o: RedisClientLimitsOptions): Promise<RedisClientLimits> {
    if (!(o.leaseTtlMs >= 300)) throw new RangeError('client limits: leaseTtlMs must be at least 300 ms');
    const connectTimeoutMs = o.connectTimeoutMs ?? 5000;
    const client = createClient(o.redis, {
      subscriber: false,
      connectionName: `smtp-lb:${o.nodeId}:clients`,
      connectTimeoutMs,
    });
    for (const s of loadClientLimitsScripts()) {
      client.defineCommand(clientLimitsCommand(s.name), { numberOfKeys: s.numberOfKeys, lua: s.lua });
    }
    const limits = new RedisClientLimits(client, o);
    try {
      if (client.status !== 'ready') {
        const ready = new Promise<void>((resolve) => client.once('ready', () => resolve()));
        await withTimeout(ready, connectTimeoutMs, 'connect');
      }
    } catch (err) {
      await limits.close();
      throw new LedgerError(
        'LEDGER_UNAVAILABLE',
        `client limits: Redis unreachable: ${(err as Error).message}`,
        'create',
        {
          cause: err,
        },
      );
    }
    return limits;
  }

  /** Key names; the prefix's hash tag keeps an address and its network on one slot. */
  keys(address: string, prefix: string): [string, string] {
    const tag = prefix.replaceAll('}', '%7D');
    const base = `${this.#o.keyPrefix}:client:{${tag}}`;
    return [`${base}:addr:${address}`, `${base}:net`];
  }

  async openSession(address: string, prefix: string, caps: SessionCaps): Promise<OpenSessionResult> {
    const keys = this.keys(address, prefix);
    const member = `${this.#o.nodeId} ${this.#instance}-${++this.#seq}`;
    let reply: number[];
    try {
      reply = await this.#run('session-open', [
        ...keys,
        member,
        this.#o.leaseTtlMs,
        caps.perAddress,
        caps.perPrefix,
      ]);
    } catch {
      return { ok: true, slot: { release() {} }, address: 0, prefix: 0 };
    }
    const [code, a, p] = reply as [number, number, number];
    if (code === 2) return { ok: false, limit: 'address', address: a, prefix: p };
    if (code === 3) return { ok: false, limit: 'prefix', address: a, prefix: p };
    const held: HeldSession = { keys, member };
    let group = this.#held.get(keys[0]);
    if (!group) {
      group = new Map();
      this.#held.set(keys[0], group);
    }
    group.set(member, held);
    const slot: ClientSlot = {
      release: once(() => {
        const g = this.#held.get(keys[0]);
        g?.delete(member);
        if (g?.size === 0) this.#held.delete(keys[0]);
        if (!this.#closed) this.#run('session-close', [...keys, member]).catch(() => {});
      }),
    };
    return { ok: true, slot, address: a, prefix: p };
  }

  hit(kind: string, key: string, limit: number, windowMs: number): Promise<RateResult> {
    return this.#rate('rate-hit', kind, key, limit, windowMs);
  }

  peek(kind: string, key: string, limit: number, windowMs: number): Promise<RateResult> {
    return this.#rate('rate-peek', kind, key, limit, windowMs);
  }

  /** Throws a LedgerError when Redis is unreachable: an operator's request should say it failed. */
  async reset(kind: string, key: string): Promise<void> {
    await this.#run('rate-reset', [this.#rateKey(kind, key), 0]);
  }

  #rateKey(kind: string, key: string): string {
    return `${this.#o.keyPrefix}:rate:{${kind}:${key.replaceAll('}', '%7D')}}`;
  }

  async #rate(
    script: 'rate-hit' | 'rate-peek',
    kind: string,
    key: string,
    limit: number,
    windowMs: number,
  ): Promise<RateResult> {
    try {
      const [code, count] = (await this.#run(script, [this.#rateKey(kind, key), windowMs, limit])) as [
        number,
        number,
      ];
      return { ok: code === ReplyCode.ok, count };
    } catch {
      return { ok: true, count: 0 };
    }
  }

  /** Frees this node's sessions at once (a clean stop) and disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    const all = [...this.#held.values()].flatMap((g) => [...g.values()]);
    this.#held.clear();
    await Promise.allSettled(all.map((h) => this.#run('session-close', [...h.keys, h.member])));
    await closeClient(this.#client, this.#timeoutMs);
  }

  /** Sessions this node counts in Redis now (for tests and the status page). */
  get heldSessions(): number {
    let n = 0;
    for (const g of this.#held.values()) n += g.size;
    return n;
  }

  async #renew(): Promise<void> {
    await Promise.allSettled(
      [...this.#held.values()].map((g) => {
        const sessions = [...g.values()];
        const first = sessions[0];
        if (!first) return Promise.resolve();
        return this.#run('session-renew', [
          ...first.keys,
          this.#o.leaseTtlMs,
          ...sessions.map((s) => s.member),
        ]);
      }),
    );
  }

  async #run(name: ClientLimitsScript, args: Array<string | number>): Promise<number[]> {
    try {
      const reply = await runScript(this.#client, clientLimitsCommand(name), args, this.#timeoutMs, name);
      if (!reply.every((v) => typeof v === 'number')) throw unknownReply(name, reply);
      return reply as number[];
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
