// The composition root (STYLE.md: one place wires the packages together): a node is its listeners,
// its pools (backend source + policy), one ledger, one binder, the admin server and the metrics.
// Nothing else in the repository imports more than one sibling package.
import type { ListenerConfig, SmtpLbConfig } from '@smtp-lb/config';
import { createSource } from '@smtp-lb/discovery';
import {
  type Ledger,
  MemoryLedger,
  MemorySuspensions,
  RedisLedger,
  RedisSuspensions,
  type Suspensions,
} from '@smtp-lb/ledger';
import { AdminServer, type NodeStatus } from './admin.js';
import { SenderPolicy } from './auth/sender-policy.js';
import { Binder } from './binder.js';
import { Destinations } from './destinations.js';
import { Listener } from './listener.js';
import { createLogger, type Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { PoolRuntime } from './pool-runtime.js';
import { RecipientMaps } from './recipient-maps.js';
import { redisTarget } from './redis-target.js';
import { Router } from './router.js';
import { ScanRuntime } from './scan/scan-runtime.js';
import type { SessionDeps } from './session.js';
import { HostPolicy } from './shaping/host-policy.js';
import { ShapingRuntime } from './shaping/shaping-runtime.js';
import { SlotWaiters } from './slot-waiters.js';

async function createLedger(config: SmtpLbConfig, log: Logger, metrics: Metrics): Promise<Ledger> {
  const target = redisTarget(config.ledger);
  if (!target) return new MemoryLedger();
  const ledgerLog = log.child({ component: 'ledger' });
  const ledger = await RedisLedger.create({
    redis: target,
    nodeId: config.node.id,
    leaseTtlMs: config.ledger.leaseTtl,
    onRedisDown: config.ledger.onRedisDown,
    keyPrefix: config.ledger.keyPrefix,
    logger: ledgerLog,
  });
  metrics.ledgerDegraded.set(ledger.degraded ? 1 : 0);
  ledger.onModeChange((mode) => metrics.ledgerDegraded.set(mode === 'degraded' ? 1 : 0));
  ledger.onError(() => metrics.ledgerErrors.inc());
  return ledger;
}

/** Suspended senders: next to the ledger in Redis when the node has one, else in memory. */
async function createSuspensions(
  config: SmtpLbConfig,
  log: Logger,
  metrics: Metrics,
  kind: 'senders' | 'hosts' = 'senders',
): Promise<Suspensions> {
  const target = redisTarget(config.ledger);
  if (!target) return new MemorySuspensions();
  const slog = log.child({ component: kind });
  return RedisSuspensions.create({
    redis: target,
    nodeId: config.node.id,
    keyPrefix: config.ledger.keyPrefix,
    kind,
    onError: (err) => {
      metrics.ledgerErrors.inc();
      slog.warn({ err: { code: err.code, message: err.message } }, `${kind}: Redis failed`);
    },
  });
}

export interface NodeOptions {
  logger?: Logger;
}

function sameAddress(a: ListenerConfig, b: ListenerConfig): boolean {
  return (
    a.listen.host === b.listen.host &&
    a.listen.port === b.listen.port &&
    !!a.tls?.implicit === !!b.tls?.implicit
  );
}

export class SmtpLbNode {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly ledger: Ledger;
  /** Bound addresses by listener name (port 0 in the config gets a real port here). */
  readonly addresses = new Map<string, { host: string; port: number }>();
  adminAddress: { host: string; port: number } | undefined;
  #config: SmtpLbConfig;
  #pools = new Map<string, PoolRuntime>();
  #router: Router;
  #listeners = new Map<string, Listener>();
  #admin: AdminServer | undefined;
  #draining = false;
  readonly #waiters: SlotWaiters;
  readonly #deps: SessionDeps;
  /** Per-client limits, tarpit, DNSBL, policy service (top-level `shaping`). */
  #shaping: ShapingRuntime | undefined;
  /** `recipientMaps`: routes by map and listener recipient checks look recipients up here. */
  #maps: RecipientMaps | undefined;
  readonly #map = (name: string) => this.#maps?.get(name);
  /** Rules about authenticated senders (top-level `senders`) and the suspensions. */
  #senders: SenderPolicy | undefined;
  /** Per client host of outbound listeners (top-level `hosts`) and the lock-outs. */
  #hosts: HostPolicy | undefined;
  readonly #unsubscribe: Array<() => void> = [];

  private constructor(config: SmtpLbConfig, ledger: Ledger, log: Logger, metrics: Metrics) {
    this.#config = config;
    this.metrics = metrics;
    this.ledger = ledger;
    this.log = log;
    this.#router = new Router(config.routes, this.#map);
    this.#waiters = new SlotWaiters((id) => ledger.watch?.(id) ?? (() => {}));
    const binder = new Binder({
      ledger,
      waiters: this.#waiters,
      admission: () => this.#config.admission,
      // A quarter of the lease: a dead node's slots are found free soon after they expire.
      recheckMs: () => Math.min(1000, this.#config.ledger.leaseTtl / 4),
      metrics: this.metrics,
    });
    this.#deps = {
      router: () => this.#router,
      pool: (name: string) => this.#pools.get(name),
      recipientMap: this.#map,
      binder,
      metrics: this.metrics,
      scanners: new ScanRuntime(config.scanners, this.metrics),
    };
  }

  static async start(config: SmtpLbConfig, opts: NodeOptions = {}): Promise<SmtpLbNode> {
    const log = (opts.logger ?? createLogger(config.log.level)).child({ node: config.node.id });
    const metrics = new Metrics();
    const ledger = await createLedger(config, log, metrics);
    const node = new SmtpLbNode(config, ledger, log, metrics);
    try {
      await node.#start();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  get config(): SmtpLbConfig {
    return this.#config;
  }

  get draining(): boolean {
    return this.#draining;
  }

  get ready(): boolean {
    return !this.#draining && [...this.#pools.values()].every((p) => p.source.ready);
  }

  async #start(): Promise<void> {
    this.#shaping = await ShapingRuntime.create(this.#config, this.log, this.metrics);
    this.#maps = await RecipientMaps.create(this.#config.recipientMaps, this.log, this.metrics);
    const suspensions = await createSuspensions(this.#config, this.log, this.metrics);
    this.#senders = new SenderPolicy({
      config: () => this.#config.senders,
      limits: this.#shaping.limits,
      suspensions,
      metrics: this.metrics,
      nodeId: this.#config.node.id,
      log: this.log,
    });
    this.metrics.onSuspendedScrape(async () => (await suspensions.list()).length);
    // Lock-outs of outbound client hosts: only a node with an outbound listener opens them.
    if (this.#config.listeners.some((l) => l.role === 'outbound')) {
      this.#hosts = new HostPolicy({
        config: () => this.#config.hosts,
        limits: this.#shaping.limits,
        lockouts: await createSuspensions(this.#config, this.log, this.metrics, 'hosts'),
        metrics: this.metrics,
        nodeId: this.#config.node.id,
      });
    }
    this.#unsubscribe.push(this.ledger.onRelease((id) => this.#waiters.release(id)));
    this.#setPools(this.#config);
    for (const lc of this.#config.listeners) await this.#startListener(lc);
    this.metrics.onScrape(() => this.#refreshGauges());
    this.#admin = new AdminServer(this.#config.admin, {
      metrics: this.metrics,
      status: () => this.status(),
      log: this.log,
      senders: this.#senders && {
        list: () => this.#senders!.suspensions.list(),
        lift: (user: string) => this.#senders!.lift(user),
      },
      ...(this.#hosts ? { hosts: this.#hosts } : {}),
    });
    this.adminAddress = await this.#admin.listen();
    this.log.info({ admin: `${this.adminAddress.host}:${this.adminAddress.port}` }, 'admin listening');
  }

  async #startListener(lc: ListenerConfig): Promise<void> {
    const listener = new Listener(
      lc,
      this.#deps,
      this.log,
      this.#shaping!,
      this.#senders!,
      lc.role === 'outbound' ? this.#hosts : undefined,
    );
    const addr = await listener.listen();
    this.#listeners.set(lc.name, listener);
    this.addresses.set(lc.name, addr);
    this.log.info({ listener: lc.name, address: `${addr.host}:${addr.port}` }, 'listening');
  }

  /** Builds the pools of `config`, keeping the runtime (and its discovery watch) of unchanged ones. */
  #setPools(config: SmtpLbConfig): void {
    const next = new Map<string, PoolRuntime>();
    for (const [name, pc] of Object.entries(config.pools)) {
      const old = this.#pools.get(name);
      if (
        old &&
        JSON.stringify(old.config) === JSON.stringify(pc) &&
        old.policyName === config.balancing.policy
      ) {
        next.set(name, old);
        continue;
      }
      const source = createSource(pc, config.consul, {
        defaultMaxConnections: config.balancing.defaultMaxConnections,
        logger: this.log.child({ component: 'discovery', pool: name }),
        onStaleChange: (stale: boolean) => {
          this.metrics.discoveryStale.set({ pool: name }, stale ? 1 : 0);
          this.log.warn(
            { pool: name, stale },
            stale ? 'discovery unreachable, keeping the last set' : 'discovery back',
          );
        },
        onError: (err) => this.metrics.discoveryErrors.inc({ pool: name, code: err.code }),
      });
      this.metrics.discoveryStale.set({ pool: name }, 0);
      const runtime = new PoolRuntime(
        name,
        pc,
        source,
        config.balancing.policy,
        Destinations.of(pc) ? new Destinations(pc, () => this.#ownEndpoints()) : undefined,
      );
      runtime.onOutlier = (d) => {
        if (d.ejected) {
          this.metrics.outlierEjections.inc({ pool: name, backend: d.id, reason: d.reason });
          this.log.warn(
            {
              pool: name,
              backend: d.id,
              reason: d.reason,
              ejections: d.ejections,
              until: new Date(d.until!).toISOString(),
            },
            'backend ejected by outlier detection',
          );
        } else {
          this.log.warn(
            { pool: name, backend: d.id, reason: d.reason },
            'backend is an outlier but maxEjectedPercent of the pool is ejected already; weight cut instead',
          );
        }
      };
      runtime.unsubscribe = source.onChange((backends) => {
        runtime.backendsChanged(backends);
        this.metrics.discoveryUpdates.inc({ pool: name });
        this.log.info({ pool: name, backends: backends.map((b) => b.id) }, 'backend set changed');
        this.#waiters.wakeAll();
      });
      next.set(name, runtime);
    }
    const retired = [...this.#pools.values()].filter((p) => next.get(p.name) !== p);
    this.#pools = next;
    // Sessions already bound keep their backend connection; only new bindings use the new pools.
    for (const p of retired) void p.close();
  }

  /** Where this node itself listens: destination pools never connect there (a loop). */
  #ownEndpoints(): Array<{ address: string; port: number }> {
    const out = [...this.addresses.values()].map((a) => ({ address: a.host, port: a.port }));
    if (this.adminAddress) out.push({ address: this.adminAddress.host, port: this.adminAddress.port });
    return out;
  }

  /** SIGHUP: apply a new configuration without dropping a session. */
  async reload(config: SmtpLbConfig): Promise<void> {
    const old = this.#config;
    if (JSON.stringify(config.ledger) !== JSON.stringify(old.ledger) || config.node.id !== old.node.id) {
      this.log.warn('ledger and node id changes need a restart; keeping the running ones');
    }
    this.#config = { ...config, ledger: old.ledger, node: old.node, admin: old.admin };
    try {
      await this.#maps?.update(config.recipientMaps);
    } catch (err) {
      this.log.error(
        { err: { message: (err as Error).message } },
        'recipient maps not reloaded; keeping the running ones',
      );
    }
    this.#router = new Router(config.routes, this.#map);
    this.#setPools(config);
    this.#shaping?.update(config.shaping);
    this.#deps.scanners.update(config.scanners);
    for (const [name, listener] of this.#listeners) {
      const lc = config.listeners.find((l) => l.name === name);
      if (lc && sameAddress(lc, listener.config)) {
        listener.update(lc);
      } else {
        this.#listeners.delete(name);
        this.addresses.delete(name);
        void listener.drain(this.#config.drainTimeout);
      }
    }
    for (const lc of config.listeners) if (!this.#listeners.has(lc.name)) await this.#startListener(lc);
    this.#waiters.wakeAll();
    this.log.info(
      { pools: Object.keys(config.pools), routes: config.routes.length },
      'configuration reloaded',
    );
  }

  status(): NodeStatus {
    const now = Date.now();
    let sessions = 0;
    for (const l of this.#listeners.values()) sessions += l.sessions;
    const pools = this.#poolStatus(now);
    const degraded = new Set(
      pools.flatMap((p) => p.backends.filter((b) => b.ledger === 'degraded').map((b) => b.id)),
    );
    return {
      node: this.#config.node.id,
      ready: this.ready,
      draining: this.#draining,
      ledger: { mode: this.ledger.mode, degradedBackends: [...degraded], liveNodes: this.ledger.liveNodes },
      sessions,
      recipientMaps: this.#maps?.status() ?? [],
      pools,
    };
  }

  #poolStatus(now: number): NodeStatus['pools'] {
    return [...this.#pools.values()].map((p) => ({
      name: p.name,
      ready: p.source.ready,
      backends: p.source.current().map((b) => {
        const effective = p.effectiveWeight(b.id, b.weight, now);
        const o = p.outliers?.state(b.id, now);
        return {
          id: b.id,
          weight: b.weight,
          effectiveWeight: Math.round(effective * 100) / 100,
          maxConnections: b.maxConnections,
          nodeConnections: this.ledger.nodeCount(b.id),
          clusterConnections: this.ledger.count(b.id),
          health: o?.ejected
            ? ('ejected' as const)
            : effective < b.weight
              ? ('penalised' as const)
              : ('ok' as const),
          ...(o
            ? {
                outlier: {
                  transactions: o.transactions,
                  deferred: o.deferred,
                  ejections: o.ejections,
                  ...(o.ejected
                    ? {
                        reason: o.reason!,
                        ejectedUntil: new Date(o.ejectedUntil!).toISOString(),
                        ejectedForMs: o.ejectedUntil! - now,
                      }
                    : {}),
                },
              }
            : {}),
          ledger: this.ledger.backendMode?.(b.id) ?? this.ledger.mode,
        };
      }),
    }));
  }

  #refreshGauges(): void {
    const m = this.metrics;
    m.backendConnections.reset();
    m.backendMaxConnections.reset();
    m.ledgerBackendDegraded.reset();
    m.discoveryBackends.reset();
    m.backendsEjected.reset();
    const now = Date.now();
    for (const p of this.#pools.values()) {
      const backends = p.source.current();
      m.discoveryBackends.set({ pool: p.name, state: 'passing' }, backends.length);
      if (p.outliers)
        m.backendsEjected.set({ pool: p.name }, backends.filter((b) => p.isEjected(b.id, now)).length);
      for (const b of backends) {
        m.backendConnections.set({ backend: b.id, scope: 'node' }, this.ledger.nodeCount(b.id));
        m.backendConnections.set({ backend: b.id, scope: 'cluster' }, this.ledger.count(b.id));
        m.backendMaxConnections.set({ backend: b.id }, b.maxConnections);
        const mode = this.ledger.backendMode?.(b.id);
        if (mode) m.ledgerBackendDegraded.set({ backend: b.id }, mode === 'degraded' ? 1 : 0);
      }
    }
  }

  /**
   * SIGTERM: readiness goes false at once, listeners stop accepting, idle sessions get 421 4.3.2,
   * transactions in flight finish (up to drainTimeout), then slots are released.
   */
  async drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    this.log.info({ timeoutMs: this.#config.drainTimeout }, 'draining');
    await Promise.all([...this.#listeners.values()].map((l) => l.drain(this.#config.drainTimeout)));
    await this.stop();
  }

  /** Stops everything now (tests, and the end of a drain). */
  async stop(): Promise<void> {
    this.#draining = true;
    await Promise.all([...this.#listeners.values()].map((l) => l.drain(0)));
    this.#listeners.clear();
    for (const u of this.#unsubscribe.splice(0)) u();
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
    await this.#admin?.close();
    await this.#shaping?.close();
    await this.#maps?.close();
    await this.#senders?.suspensions.close();
    await this.#hosts?.lockouts.close();
    await this.#deps.scanners.close();
    await this.ledger.close();
  }
}
