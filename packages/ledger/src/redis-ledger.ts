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
  /**
   * Redis has this node's real count on the backend: acquires and releases go to Redis (false while
   * the backend's keys are out of reach or being re-asserted). Per backend: on a Redis Cluster each
   * backend's keys live on one master, and losing it touches only its backends.
   */
  synced: boolean;
  /** 'degraded' from the first failed call until the re-assert that follows has gone through. */
  degraded: boolean;
  /**
   * `held` when the backend stopped being synced: what Redis still counts for this node there at
   * least (releases made since have not reached it), for as long as its lease there lives.
   */
  reserved: number;
  /** When a call on the backend's keys last got a reply while synced (Date.now()). */
  contactAt: number;
  /** Nodes with a live lease on the backend at its last heartbeat (0: not known yet). */
  live: number;
  /** Until then (one ttl after a re-assert that ended an outage) the node also keeps to its share. */
  settlingUntil: number;
  /** Set while the counts are re-asserted: acquires on the backend wait for it. */
  gate: Promise<void> | undefined;
  /** Acquires on the backend sent to Redis and not answered yet (a re-assert waits for them). */
  inflight: number;
  drainWaiters: Array<() => void>;
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
  private currentMode: LedgerMode = 'redis';
  /**
   * All of Redis is out of reach (a single Redis or Sentinel master away, or the Cluster client
   * closed): a backend first asked about meanwhile starts degraded. Cleared by a heartbeat that gets through.
   */
  private down = false;
  /** Whether the last beat of the liveness key got through (to log its loss once). */
  private liveKeyOk = true;
  private nodesSeen = 1;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private tickAgain = false;
  private closed = false;
  /**
   * Both clients were ready once (create): a 'ready' before that (the subscriber's, while the main
   * client still connects) would beat on a client that cannot send yet and log a degradation.
   */
  private started = false;
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
    // On a Cluster one master's trouble (a slots refresh that failed, a node that went away) is not
    // every backend's: the calls on the keys it holds fail and degrade their backends.
    client.on('error', (err: Error) => (this.sharded ? this.report(err) : this.failure(err)));
    subscriber.on('error', (err: Error) => this.log.warn({ err }, 'ledger subscriber: Redis error'));
    client.on('close', () => this.failure(new LedgerError('LEDGER_UNAVAILABLE', 'Redis connection closed')));
    // Back after an outage: resync now rather than at the next heartbeat.
    client.on('ready', () => {
      // A Cluster client is ready again once it has the slot map: the masters answer again, even
      // if the liveness key's master does not (that one only keeps the node count from changing).
      if (this.sharded) this.down = false;
      if (this.started) void this.tick();
    });
    // Release messages sent while the subscriber was away are lost: re-read the counts.
    subscriber.on('ready', () => {
      if (this.started) void this.tick();
    });
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
      ledger.started = true;
      await ledger.tick();
      if (ledger.down || !ledger.liveKeyOk) throw new Error('first heartbeat failed');
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

  /** Some backend (or, on a single Redis, all of Redis) is out of reach. */
  get degraded(): boolean {
    return this.currentMode === 'degraded';
  }

  /** 'degraded' while this backend's keys are out of reach (its Cluster master, or all of Redis). */
  backendMode(backendId: string): LedgerMode {
    const st = this.backends.get(backendId);
    if (!st) return this.down ? 'degraded' : 'redis';
    return st.degraded ? 'degraded' : 'redis';
  }

  /** The backends whose keys are out of reach now. */
  get degradedBackends(): string[] {
    return [...this.backends].filter(([, st]) => st.degraded).map(([id]) => id);
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
    while (st.gate) await st.gate;
    if (!st.synced) return this.acquireLocally(backendId, st, cap);
    if (Date.now() < st.settlingUntil && !this.withinLocalShare(st, cap)) return undefined;
    const registered = st.registered;
    st.inflight += 1;
    let reply: number[];
    try {
      reply = await this.run('acquire', backendId, [cap]);
    } catch (err) {
      const e = this.failure(err, backendId);
      if (!isOutage(e)) throw e;
      return this.acquireLocally(backendId, st, cap);
    } finally {
      st.inflight -= 1;
      if (st.inflight === 0) for (const w of st.drainWaiters.splice(0)) w();
    }
    const [code, total, present] = reply as [number, number, number];
    this.contact(st);
    st.total = total;
    st.registered = true;
    this.listen(backendId);
    if (!present && registered && st.held > 0) {
      // Our lease had lapsed (a stall longer than the ttl) and others pruned our entry: the
      // slots we still hold are not counted. Put them back.
      this.log.warn({ backend: backendId, held: st.held }, 'ledger lease lapsed; re-asserting counts');
      void this.resync(backendId);
    }
    if (code !== ReplyCode.ok) return undefined;
    return this.grant(backendId, st);
  }

  count(backendId: string): number {
    const st = this.state(backendId);
    // Without Redis the cluster count is unknown; what this node holds is what it controls.
    return st.synced ? Math.max(st.total, st.held) : st.held;
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
    await Promise.all([...this.backends.values()].map((st) => st.gate));
    for (const st of this.backends.values()) st.synced = false;
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
      // Nothing held yet, so Redis already has this node's real count (none), unless it is away.
      st = {
        held: 0,
        total: 0,
        registered: false,
        lastUsed: Date.now(),
        synced: !this.down,
        degraded: this.down,
        reserved: 0,
        contactAt: 0,
        live: 0,
        settlingUntil: 0,
        gate: undefined,
        inflight: 0,
        drainWaiters: [],
      };
      this.backends.set(backendId, st);
    } else st.lastUsed = Date.now();
    return st;
  }

  private contact(st: BackendState): void {
    if (st.synced) st.contactAt = Date.now();
  }

  /**
   * Without the backend's keys. For one lease ttl after the last reply, Redis may still count this
   * node there as it was (its lease lives) and the other nodes may still be counting in Redis (a
   * slow reply, one Cluster master away, a partition of this node): the node only reuses slots
   * Redis still counts for it, and never goes above its share. After that, Redis has pruned it or is
   * away for everyone, and the node keeps to its share: floor(cap / live nodes).
   */
  private acquireLocally(backendId: string, st: BackendState, cap: number): Lease | undefined {
    if (this.opts.onRedisDown === 'reject') return undefined;
    const share = this.share(st, cap);
    const allowance = Date.now() - st.contactAt < this.ttl ? Math.min(share, st.reserved) : share;
    if (st.held >= allowance) return undefined;
    return this.grant(backendId, st);
  }

  /** The largest count of live nodes this node knows of: on the backend, and cluster-wide. */
  private share(st: BackendState, cap: number): number {
    return Math.floor(cap / Math.max(1, this.nodesSeen, st.live));
  }

  private withinLocalShare(st: BackendState, cap: number): boolean {
    return st.held < this.share(st, cap);
  }

  private grant(backendId: string, st: BackendState): Lease {
    st.held += 1;
    return { backendId, release: once(() => this.release(backendId, st)) };
  }

  private release(backendId: string, st: BackendState): void {
    st.held -= 1;
    st.lastUsed = Date.now();
    if (st.synced) {
      st.total = Math.max(st.held, st.total - 1);
      this.run('release', backendId, []).then(
        ([, total]) => {
          this.contact(st);
          st.total = total as number;
          this.listen(backendId);
        },
        (err: unknown) => void this.failure(err, backendId),
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
      const now = Date.now();
      const settling = [...this.backends.values()].some((st) => !st.synced || now < st.settlingUntil);
      this.nodesSeen = this.down || settling ? Math.max(this.nodesSeen, seen) : seen;
      this.down = false;
      if (!this.liveKeyOk) this.log.info({}, 'ledger: the liveness key answers again');
      this.liveKeyOk = true;
      this.updateMode();
    } catch (err) {
      // One Redis: everything is away. A Cluster: only the liveness key's master is; the backends'
      // own leases (next to their counts) carry on, and the node keeps the count it last saw.
      if (!this.sharded) {
        this.failure(err);
        return;
      }
      this.report(err);
      if (this.liveKeyOk)
        this.log.warn({ err, liveNodes: this.nodesSeen }, 'ledger: the liveness key is out of reach');
      this.liveKeyOk = false;
    }
    this.forgetIdle();
    await Promise.all(
      [...this.backends.entries()].map(([id, st]) => (st.synced ? this.beat(id, st) : this.resync(id))),
    );
    this.unlisten();
  }

  private async beat(backendId: string, st: BackendState): Promise<void> {
    const registered = st.registered;
    let reply: number[];
    try {
      reply = await this.run('heartbeat', backendId, []);
    } catch (err) {
      // An outage degrades the backend (all of them on one Redis); a broken key of one backend is
      // reported and takes nothing else down.
      this.failure(err, backendId);
      return;
    }
    const [, total, present, , live] = reply as [number, number, number, number, number | undefined];
    this.contact(st);
    const before = st.total;
    st.total = total;
    st.registered = true;
    if (typeof live === 'number') st.live = live;
    this.listen(backendId);
    if (!present && registered && st.held > 0) {
      this.log.warn({ backend: backendId, held: st.held }, 'ledger lease lapsed; re-asserting counts');
      void this.resync(backendId);
    } else if (total < before) this.notify(backendId);
  }

  /** Backends nobody asked about for three ttls and where this node holds nothing. */
  private forgetIdle(): void {
    const cutoff = Date.now() - 3 * this.ttl;
    for (const [id, st] of this.backends) {
      if (st.held === 0 && st.synced && st.lastUsed < cutoff && !this.watchers.has(id))
        this.backends.delete(id);
    }
  }

  /**
   * Puts this node's real count on a backend into Redis (a SET, not an increment, so nothing is
   * counted twice), then returns the backend to 'redis' mode. Acquires on it wait behind its gate,
   * and the re-assert starts only once none is in flight, so the value sent is exact.
   */
  private resync(backendId: string): Promise<void> {
    const st = this.backends.get(backendId);
    if (!st) return Promise.resolve();
    if (st.gate) return st.gate;
    st.gate = (async () => {
      if (st.inflight > 0) await new Promise<void>((r) => st.drainWaiters.push(r));
      // From here releases go to Redis again; they queue behind the re-assert on the same
      // connection, and `held` below already reflects every release made so far.
      st.synced = true;
      let reply: number[];
      try {
        reply = await this.run('reassert', backendId, [st.held]);
      } catch (err) {
        this.failure(err, backendId);
        return;
      }
      // A release failed while the re-assert was on the way: stay degraded, the next beat retries.
      if (!st.synced) return;
      this.contact(st);
      st.total = reply[1]!;
      st.registered = true;
      if (st.degraded) {
        // A Redis (or master) that restarted empty knows only the nodes that have re-asserted so
        // far, and every live node re-asserts within one heartbeat (ttl/3).
        st.settlingUntil = Date.now() + this.ttl;
        st.degraded = false;
        this.log.info(
          { backend: backendId, held: st.held },
          'ledger: backend reachable again, count re-asserted; local share kept for one lease ttl while the other nodes re-assert',
        );
        this.updateMode();
        this.notify(backendId);
      }
    })()
      .catch((err: unknown) => void this.failure(err, backendId))
      .finally(() => {
        st.gate = undefined;
      });
    return st.gate;
  }

  /**
   * Every failed Redis call ends here: reported, and if Redis is away or too slow, the ledger
   * stops trusting it for that backend until a heartbeat gets through and re-asserts. On a single
   * Redis (or Sentinel) every backend's keys are on the one server, so all of them degrade; on a
   * Cluster only `backendId`, whose keys are on the master that failed.
   */
  private failure(err: unknown, backendId?: string): LedgerError {
    const e = this.report(err);
    if (this.closed) return e;
    if (!isOutage(e)) {
      this.log.error({ err: e, command: e.command }, `ledger: Redis script refused: ${e.code}`);
      return e;
    }
    if (this.sharded && backendId !== undefined) {
      const st = this.backends.get(backendId);
      if (st && this.unsync(st)) {
        this.log.warn(
          { err: e, backend: backendId, liveNodes: Math.max(this.nodesSeen, st.live) },
          this.opts.onRedisDown === 'local-share'
            ? 'ledger degraded on a backend: its keys are out of reach, keeping to the local share there'
            : 'ledger degraded on a backend: its keys are out of reach, refusing new connections there',
        );
        this.notify(backendId);
      }
    } else {
      this.down = true;
      let changed = false;
      for (const st of this.backends.values()) changed = this.unsync(st) || changed;
      if (changed || this.currentMode !== 'degraded') {
        this.log.warn(
          { err: e, liveNodes: this.nodesSeen, onRedisDown: this.opts.onRedisDown },
          this.opts.onRedisDown === 'local-share'
            ? `ledger degraded: Redis unreachable, keeping to floor(cap / ${this.nodesSeen}) per backend`
            : 'ledger degraded: Redis unreachable, refusing new backend connections',
        );
        // The local share may allow what the cluster count refused.
        for (const id of this.backends.keys()) this.notify(id);
      }
    }
    this.updateMode();
    return e;
  }

  /** Tells the error listeners. */
  private report(err: unknown): LedgerError {
    const e = toLedgerError(err);
    if (!this.closed) for (const l of [...this.errorListeners]) l(e);
    return e;
  }

  /** Stops trusting Redis for one backend; true when it was not degraded yet. */
  private unsync(st: BackendState): boolean {
    if (st.synced) {
      st.synced = false;
      st.reserved = st.held;
      // Never answered yet (its first call failed): others may be counting there all the same.
      if (st.contactAt === 0) st.contactAt = Date.now();
    }
    if (st.degraded) return false;
    st.degraded = true;
    return true;
  }

  /** 'degraded' while some backend is, or while all of Redis is away. */
  private updateMode(): void {
    const degraded = this.down || [...this.backends.values()].some((st) => st.degraded);
    const mode: LedgerMode = degraded ? 'degraded' : 'redis';
    if (mode === this.currentMode || this.closed) return;
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
