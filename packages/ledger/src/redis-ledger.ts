// The cluster-wide ledger: per backend, Redis keeps how many connections each live node holds
// (Lua scripts in ./lua), so that however many nodes run, no backend gets more than its cap
// (DESIGN.md invariant 2) and a dead node's slots stop counting within the lease ttl (invariant 3).

import { commandName, defineLedgerCommands, type ScriptName } from './commands.js';
import {
  closeClient,
  createClient,
  disconnectClient,
  type LedgerClient,
  type RedisTarget,
  withTimeout,
} from './connect.js';
import { checkReply, LedgerError, ReplyCode } from './errors.js';
import { checkCap } from './memory-ledger.js';
import { RedisKeys } from './redis-keys.js';
import { type Lease, type Ledger, type LedgerMode, once } from './types.js';

/** pino-compatible; the proxy passes a child logger. */
export interface LedgerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RedisLedgerOptions {
  redis: RedisTarget;
  /** Unique per node (DESIGN.md `node.id`). */
  nodeId: string;
  /** A node that stops renewing its lease for this long stops counting. */
  leaseTtlMs: number;
  /**
   * Without Redis: 'local-share' keeps this node to floor(cap / live nodes last seen), counted
   * locally (0 when the cap is below the node count: never over the cap, mail is deferred);
   * 'reject' takes no new slot at all.
   */
  onRedisDown: 'local-share' | 'reject';
  /** Every key starts with `<keyPrefix>:`. */
  keyPrefix: string;
  logger?: LedgerLogger;
  /** Bound on one Redis round trip before the ledger counts Redis as down; default 1000 ms. */
  commandTimeoutMs?: number;
  /** How long `create` waits for Redis; default 5000 ms. A node does not start blind. */
  connectTimeoutMs?: number;
}

interface BackendState {
  /** Leases this node holds now (the truth the node re-asserts). */
  held: number;
  /** Cluster-wide count from the last reply or release message. */
  total: number;
  /** A reply has shown this node's lease on the backend (so a missing lease later is a lapse). */
  registered: boolean;
  lastUsed: number;
  /** The cap of the last tryAcquire (for the "near the cap" rule of the subscription). */
  cap?: number;
}

interface ReleaseMessage {
  b: string;
  n: string;
  t: number;
}

const silent: LedgerLogger = { info() {}, warn() {}, error() {} };

/**
 * A node listens on a backend's release channel while it has waiters there or its view of the
 * backend is within `headroom` of the cap, and stops below twice that (so it does not flap). Far from
 * the cap, its own replies and the heartbeat keep its count fresh enough to pick with.
 */
const headroom = (cap: number) => Math.max(1, Math.ceil(cap / 10));

function toLedgerError(err: unknown): LedgerError {
  if (err instanceof LedgerError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new LedgerError('LEDGER_UNAVAILABLE', message, undefined, { cause: err });
}

/** Redis away or too slow, as opposed to a script refusing (a bug, or foreign data in a key). */
const isOutage = (e: LedgerError) => e.code === 'LEDGER_UNAVAILABLE' || e.code === 'LEDGER_TIMEOUT';

function waitReady(client: LedgerClient, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const timer = setTimeout(() => done(new Error(`Redis not ready within ${ms} ms`)), ms);
    client.on('ready', onReady);
  });
}

export class RedisLedger implements Ledger {
  private readonly keys: RedisKeys;
  private readonly log: LedgerLogger;
  private readonly ttl: number;
  private readonly timeoutMs: number;
  private readonly backends = new Map<string, BackendState>();
  private readonly releaseListeners = new Set<(backendId: string) => void>();
  private readonly modeListeners = new Set<(mode: LedgerMode) => void>();
  private readonly errorListeners = new Set<(err: LedgerError) => void>();
  private currentMode: LedgerMode = 'degraded';
  /** Redis has this node's real counts: releases go to Redis (false while down or resyncing). */
  private synced = false;
  private nodesSeen = 1;
  /** Set while counts are re-asserted: acquires wait for it. */
  private gate: Promise<void> | undefined;
  private inflight = 0;
  private drainWaiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private tickAgain = false;
  private everSynced = false;
  /**
   * Until then (one lease ttl after Redis came back from an outage) this node also keeps to its
   * local share: a Redis that restarted empty knows only the nodes that have re-asserted so far, and
   * every live node re-asserts within one heartbeat (ttl/3).
   */
  private settlingUntil = 0;
  private closed = false;
  /** Sessions of this node waiting for a slot, per backend (`watch`). */
  private readonly watchers = new Map<string, number>();
  /** Backends whose release channel the subscriber listens on. */
  private readonly listening = new Set<string>();
  /** Release messages heard (for the fan-out benchmark and the tests). */
  private heard = 0;

  /** Redis Cluster: sharded pub/sub (SPUBLISH/SSUBSCRIBE), a message stays on its backend's shard. */
  private readonly sharded: boolean;

  private constructor(
    private readonly client: LedgerClient,
    private readonly subscriber: LedgerClient,
    private readonly opts: RedisLedgerOptions,
  ) {
    this.sharded = typeof opts.redis === 'object' && 'cluster' in opts.redis;
    this.keys = new RedisKeys(opts.keyPrefix);
    this.log = opts.logger ?? silent;
    this.ttl = Math.round(opts.leaseTtlMs);
    this.timeoutMs = opts.commandTimeoutMs ?? 1000;
    // ioredis emits 'error' on every failed (re)connect; unhandled, that would kill the process.
    client.on('error', (err: Error) => this.failure(err));
    subscriber.on('error', (err: Error) => this.log.warn({ err }, 'ledger subscriber: Redis error'));
    client.on('close', () => this.failure(new LedgerError('LEDGER_UNAVAILABLE', 'Redis connection closed')));
    // Back after an outage: resync now rather than at the next heartbeat.
    client.on('ready', () => void this.tick());
    // Release messages sent while the subscriber was away are lost: re-read the counts.
    subscriber.on('ready', () => void this.tick());
    subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    subscriber.on('smessage', (channel: string, message: string) => this.onMessage(channel, message));
  }

  /** Connects, registers the scripts, joins the cluster; rejects if Redis is not reachable in time. */
  static async create(opts: RedisLedgerOptions): Promise<RedisLedger> {
    if (!(opts.leaseTtlMs >= 300)) throw new RangeError('ledger: leaseTtlMs must be at least 300 ms');
    if (!opts.nodeId) throw new RangeError('ledger: nodeId must not be empty');
    const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    const role = { connectTimeoutMs, connectionName: `smtp-lb:${opts.nodeId}` };
    const client = createClient(opts.redis, { ...role, subscriber: false });
    const subscriber = createClient(opts.redis, { ...role, subscriber: true });
    const ledger = new RedisLedger(client, subscriber, opts);
    try {
      defineLedgerCommands(client);
      await Promise.all([waitReady(client, connectTimeoutMs), waitReady(subscriber, connectTimeoutMs)]);
      await ledger.tick();
      if (!ledger.synced) throw new Error('first heartbeat failed');
    } catch (err) {
      ledger.closed = true;
      disconnectClient(client);
      disconnectClient(subscriber);
      throw new LedgerError(
        'LEDGER_UNAVAILABLE',
        `ledger: Redis unreachable: ${(err as Error).message}`,
        'create',
        {
          cause: err,
        },
      );
    }
    ledger.timer = setInterval(() => void ledger.tick(), Math.max(100, Math.floor(ledger.ttl / 3)));
    ledger.timer.unref();
    return ledger;
  }

  get mode(): LedgerMode {
    return this.currentMode;
  }

  get degraded(): boolean {
    return this.currentMode === 'degraded';
  }

  /** Live nodes at the last heartbeat, this one included (the divisor of the local share). */
  get liveNodes(): number {
    return this.nodesSeen;
  }

  get nodeId(): string {
    return this.opts.nodeId;
  }

  /** Release messages this node has received from Redis so far. */
  get messagesReceived(): number {
    return this.heard;
  }

  /** Backends whose release channel this node listens on now. */
  get listeningTo(): ReadonlySet<string> {
    return this.listening;
  }

  watch(backendId: string): () => void {
    this.watchers.set(backendId, (this.watchers.get(backendId) ?? 0) + 1);
    this.listen(backendId);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.watchers.get(backendId) ?? 1) - 1;
      if (n > 0) this.watchers.set(backendId, n);
      else this.watchers.delete(backendId);
    };
  }

  async tryAcquire(backendId: string, cap: number): Promise<Lease | undefined> {
    checkCap(cap);
    if (this.closed) return undefined;
    const st = this.state(backendId);
    st.cap = cap;
    while (this.gate) await this.gate;
    if (!this.synced) return this.acquireLocally(backendId, st, cap);
    if (Date.now() < this.settlingUntil && !this.withinLocalShare(st, cap)) return undefined;
    const registered = st.registered;
    this.inflight += 1;
    let reply: number[];
    try {
      reply = await this.run('acquire', backendId, [cap]);
    } catch (err) {
      const e = this.failure(err);
      if (!isOutage(e)) throw e;
      return this.acquireLocally(backendId, st, cap);
    } finally {
      this.inflight -= 1;
      if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
    }
    const [code, total, present] = reply as [number, number, number];
    st.total = total;
    st.registered = true;
    this.listen(backendId);
    if (!present && registered && st.held > 0) {
      // Our lease had lapsed (a stall longer than the ttl) and others pruned our entry: the
      // slots we still hold are not counted. Put them back.
      this.log.warn({ backend: backendId, held: st.held }, 'ledger lease lapsed; re-asserting counts');
      void this.resync();
    }
    if (code !== ReplyCode.ok) return undefined;
    return this.grant(backendId, st);
  }

  count(backendId: string): number {
    const st = this.state(backendId);
    // Without Redis the cluster count is unknown; what this node holds is what it controls.
    return this.synced ? Math.max(st.total, st.held) : st.held;
  }

  nodeCount(backendId: string): number {
    return this.backends.get(backendId)?.held ?? 0;
  }

  onRelease(listener: (backendId: string) => void): () => void {
    this.releaseListeners.add(listener);
    return () => this.releaseListeners.delete(listener);
  }

  onModeChange(listener: (mode: LedgerMode) => void): () => void {
    this.modeListeners.add(listener);
    return () => this.modeListeners.delete(listener);
  }

  onError(listener: (err: LedgerError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Frees this node's slots in Redis at once (a clean shutdown) and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.gate;
    this.synced = false;
    // Whatever the mode: leaving removes this node's entries outright, so it needs no resync.
    try {
      await Promise.all([
        ...[...this.backends.keys()].map((id) => this.run('leave', id, [])),
        withTimeout(this.client.zrem(this.keys.liveNodes, this.opts.nodeId), this.timeoutMs, 'zrem'),
      ]);
    } catch (err) {
      this.log.warn({ err }, 'ledger close: could not free slots in Redis; they expire with the lease ttl');
    }
    this.releaseListeners.clear();
    this.modeListeners.clear();
    this.errorListeners.clear();
    await Promise.all([this.client, this.subscriber].map((c) => closeClient(c, this.timeoutMs)));
  }

  private state(backendId: string): BackendState {
    let st = this.backends.get(backendId);
    if (!st) {
      st = { held: 0, total: 0, registered: false, lastUsed: Date.now() };
      this.backends.set(backendId, st);
    } else st.lastUsed = Date.now();
    return st;
  }

  private acquireLocally(backendId: string, st: BackendState, cap: number): Lease | undefined {
    if (this.opts.onRedisDown === 'reject') return undefined;
    if (!this.withinLocalShare(st, cap)) return undefined;
    return this.grant(backendId, st);
  }

  private withinLocalShare(st: BackendState, cap: number): boolean {
    return st.held < Math.floor(cap / this.nodesSeen);
  }

  private grant(backendId: string, st: BackendState): Lease {
    st.held += 1;
    return { backendId, release: once(() => this.release(backendId, st)) };
  }

  private release(backendId: string, st: BackendState): void {
    st.held -= 1;
    st.lastUsed = Date.now();
    if (this.synced) {
      st.total = Math.max(st.held, st.total - 1);
      this.run('release', backendId, []).then(
        ([, total]) => {
          st.total = total as number;
          this.listen(backendId);
        },
        (err: unknown) => void this.failure(err),
      );
    }
    // Local waiters need no round trip; other nodes hear it from the release script's PUBLISH.
    this.notify(backendId);
  }

  /** Runs a per-backend script; rejects with a LedgerError for an outage or a bad reply. */
  private async run(name: ScriptName, backendId: string, extra: Array<string | number>): Promise<number[]> {
    const k = this.keys.backend(backendId);
    const args = [
      k.counts,
      k.nodes,
      this.opts.nodeId,
      this.ttl,
      k.released,
      this.sharded ? 'SPUBLISH' : 'PUBLISH',
      backendId,
      ...extra,
    ];
    return checkReply(name, await this.send(name, args));
  }

  private send(name: ScriptName, args: Array<string | number>): Promise<unknown> {
    const fn = (this.client as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>)[
      commandName(name)
    ]!;
    const p = fn.apply(this.client, args).catch((err: Error) => {
      throw new LedgerError('LEDGER_UNAVAILABLE', `${name}: ${err.message}`, name, { cause: err });
    });
    return withTimeout(p, this.timeoutMs, name);
  }

  /**
   * The heartbeat (every ttl/3): renew this node's liveness, and per known backend its lease,
   * refreshing the cached counts. After an outage, the first successful beat resyncs.
   */
  private tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.ticking) {
      // Asked mid-beat (a reconnect): that beat may have read before the event, so beat again.
      this.tickAgain = true;
      return this.ticking;
    }
    this.ticking = (async () => {
      do {
        this.tickAgain = false;
        await this.beatAll();
      } while (this.tickAgain && !this.closed);
    })().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  private async beatAll(): Promise<void> {
    try {
      const reply = await this.send('node-beat', [this.keys.liveNodes, this.opts.nodeId, this.ttl]);
      const seen = Math.max(1, checkReply('node-beat', reply)[1]!);
      // Right after an outage Redis may have restarted empty and know only the nodes that beat
      // since: keep the larger count until every node has had the time to beat again.
      this.nodesSeen =
        !this.synced || Date.now() < this.settlingUntil ? Math.max(this.nodesSeen, seen) : seen;
      if (!this.synced) {
        await this.resync();
        return;
      }
      this.forgetIdle();
      await Promise.all([...this.backends.entries()].map(([id, st]) => this.beat(id, st)));
      this.unlisten();
    } catch (err) {
      this.failure(err);
    }
  }

  private async beat(backendId: string, st: BackendState): Promise<void> {
    const registered = st.registered;
    let reply: number[];
    try {
      reply = await this.run('heartbeat', backendId, []);
    } catch (err) {
      // A broken key of one backend must not take the whole ledger down.
      if (isOutage(toLedgerError(err))) throw err;
      this.failure(err);
      return;
    }
    const [, total, present] = reply as [number, number, number];
    const before = st.total;
    st.total = total;
    st.registered = true;
    this.listen(backendId);
    if (!present && registered && st.held > 0) {
      this.log.warn({ backend: backendId, held: st.held }, 'ledger lease lapsed; re-asserting counts');
      void this.resync();
    } else if (total < before) this.notify(backendId);
  }

  /** Backends nobody asked about for three ttls and where this node holds nothing. */
  private forgetIdle(): void {
    const cutoff = Date.now() - 3 * this.ttl;
    for (const [id, st] of this.backends) {
      if (st.held === 0 && st.lastUsed < cutoff && !this.watchers.has(id)) this.backends.delete(id);
    }
  }

  /**
   * Puts this node's real counts into Redis (a SET per backend, not an increment, so nothing is
   * counted twice), then returns to 'redis' mode. Acquires wait behind the gate, and the
   * re-assert starts only once none is in flight, so each value sent is exact.
   */
  private resync(): Promise<void> {
    if (this.gate) return this.gate;
    this.gate = (async () => {
      if (this.inflight > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
      // From here releases go to Redis again; they queue behind the re-asserts on the same
      // connection, and `held` below already reflects every release made so far.
      this.synced = true;
      const ids = [...this.backends.keys()];
      const results = await Promise.allSettled(
        ids.map((id) => this.run('reassert', id, [this.backends.get(id)!.held])),
      );
      ids.forEach((id, i) => {
        const r = results[i]!;
        const st = this.backends.get(id);
        if (r.status === 'rejected') this.failure(r.reason);
        else if (st) {
          st.total = r.value[1]!;
          st.registered = true;
        }
      });
      // A call failed while the re-asserts were on the way: stay degraded, the next beat retries.
      if (!this.synced) return;
      if (this.currentMode !== 'redis') {
        if (this.everSynced) {
          this.settlingUntil = Date.now() + this.ttl;
          this.log.info(
            { backends: ids.length },
            'ledger: Redis back, counts re-asserted; local share kept for one lease ttl while the other nodes re-assert',
          );
        }
        this.everSynced = true;
        this.setMode('redis');
        for (const id of ids) this.notify(id);
      }
    })()
      .catch((err: unknown) => void this.failure(err))
      .finally(() => {
        this.gate = undefined;
      });
    return this.gate;
  }

  /**
   * Every failed Redis call ends here: reported, and if Redis is away or too slow, the ledger
   * stops trusting it until a heartbeat gets through and resyncs.
   */
  private failure(err: unknown): LedgerError {
    const e = toLedgerError(err);
    if (this.closed) return e;
    for (const l of [...this.errorListeners]) l(e);
    if (!isOutage(e)) {
      this.log.error({ err: e, command: e.command }, `ledger: Redis script refused: ${e.code}`);
      return e;
    }
    this.synced = false;
    if (this.currentMode !== 'degraded') this.degrade(e);
    return e;
  }

  private degrade(e: LedgerError): void {
    this.log.warn(
      { err: e, liveNodes: this.nodesSeen, onRedisDown: this.opts.onRedisDown },
      this.opts.onRedisDown === 'local-share'
        ? `ledger degraded: Redis unreachable, keeping to floor(cap / ${this.nodesSeen}) per backend`
        : 'ledger degraded: Redis unreachable, refusing new backend connections',
    );
    this.setMode('degraded');
    // The local share may allow what the cluster count refused.
    for (const id of this.backends.keys()) this.notify(id);
  }

  private setMode(mode: LedgerMode): void {
    this.currentMode = mode;
    for (const l of [...this.modeListeners]) l(mode);
  }

  /** The rule above; `on`: listening already (the lower threshold applies). */
  private wants(backendId: string, on: boolean): boolean {
    if (this.watchers.has(backendId)) return true;
    const st = this.backends.get(backendId);
    return st?.cap !== undefined && st.total >= st.cap - (on ? 2 : 1) * headroom(st.cap);
  }

  /**
   * Subscribes to the backend's release channel when the rule above says so. Right after a
   * subscription the waiters look again: a release may have gone by before it was in place.
   * Leaving waits for the heartbeat (`unlisten`): waiters come and go with every wake-up, and a
   * subscription per wake-up would churn (on a Cluster, a sharded subscriber connection each time).
   */
  private listen(backendId: string): void {
    if (this.closed || this.listening.has(backendId) || !this.wants(backendId, false)) return;
    this.listening.add(backendId);
    const channel = this.keys.backend(backendId).released;
    const sub = this.subscriber;
    (this.sharded ? sub.ssubscribe(channel) : sub.subscribe(channel)).then(
      () => this.notify(backendId),
      (err: unknown) => this.log.warn({ err, backend: backendId }, 'ledger: subscribe failed'),
    );
  }

  /** At each heartbeat: leave the channels of backends the rule no longer asks for. */
  private unlisten(): void {
    const sub = this.subscriber;
    for (const id of [...this.listening]) {
      if (this.wants(id, true)) continue;
      this.listening.delete(id);
      const channel = this.keys.backend(id).released;
      (this.sharded ? sub.sunsubscribe(channel) : sub.unsubscribe(channel)).catch((err: unknown) =>
        this.log.warn({ err, backend: id }, 'ledger: unsubscribe failed'),
      );
    }
  }

  private onMessage(channel: string, message: string): void {
    let m: ReleaseMessage;
    try {
      m = JSON.parse(message) as ReleaseMessage;
    } catch {
      return;
    }
    if (typeof m.b !== 'string' || channel !== this.keys.backend(m.b).released) return;
    this.heard += 1;
    if (m.n === this.opts.nodeId) return;
    const st = this.backends.get(m.b);
    if (st && typeof m.t === 'number') st.total = m.t;
    this.listen(m.b);
    this.notify(m.b);
  }

  private notify(backendId: string): void {
    for (const l of [...this.releaseListeners]) {
      try {
        l(backendId);
      } catch (err) {
        this.log.error({ err, backend: backendId }, 'ledger release listener threw');
      }
    }
  }
}
