// The composition root (STYLE.md: one place wires the packages together): a node is its listeners,
// its pools (backend source + policy), one ledger, one binder and the metrics. Nothing else in the
// repository imports more than one sibling package.
import type { SmtpLbConfig } from '@smtp-lb/config';
import { createSource } from '@smtp-lb/discovery';
import { type Ledger, MemoryLedger, RedisLedger } from '@smtp-lb/ledger';
import { Binder } from './binder.js';
import { Listener } from './listener.js';
import { createLogger, type Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { PoolRuntime } from './pool-runtime.js';
import { installReplyRelay } from './reply-relay.js';
import { Router } from './router.js';
import { SlotWaiters } from './slot-waiters.js';

export interface NodeOptions {
  logger?: Logger;
}

export class SmtpLbNode {
  readonly log: Logger;
  readonly metrics = new Metrics();
  readonly ledger: Ledger;
  readonly listeners: Listener[] = [];
  /** Bound addresses by listener name (port 0 in the config gets a real port here). */
  readonly addresses = new Map<string, { host: string; port: number }>();
  #config: SmtpLbConfig;
  #pools = new Map<string, PoolRuntime>();
  #router: Router;
  readonly #waiters = new SlotWaiters();
  readonly #unsubscribe: Array<() => void> = [];

  private constructor(config: SmtpLbConfig, ledger: Ledger, log: Logger) {
    this.#config = config;
    this.ledger = ledger;
    this.log = log;
    this.#router = new Router(config.routes);
  }

  static async start(config: SmtpLbConfig, opts: NodeOptions = {}): Promise<SmtpLbNode> {
    await installReplyRelay();
    const log = (opts.logger ?? createLogger(config.log.level)).child({ node: config.node.id });
    const ledger: Ledger = config.ledger.redis
      ? await RedisLedger.create({
          redis: config.ledger.redis,
          nodeId: config.node.id,
          leaseTtlMs: config.ledger.leaseTtl,
          onRedisDown: config.ledger.onRedisDown,
          keyPrefix: config.ledger.keyPrefix,
          logger: log.child({ component: 'ledger' }),
        })
      : new MemoryLedger();
    const node = new SmtpLbNode(config, ledger, log);
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

  async #start(): Promise<void> {
    const { config, ledger, metrics } = this;
    for (const [name, pool] of Object.entries(config.pools)) {
      const source = createSource(pool, config.consul, {
        defaultMaxConnections: config.balancing.defaultMaxConnections,
        logger: this.log.child({ component: 'discovery', pool: name }),
      });
      this.#pools.set(name, new PoolRuntime(name, pool, source, config.balancing.policy));
      this.#unsubscribe.push(
        source.onChange((backends) => {
          metrics.discoveryUpdates.inc({ pool: name });
          this.log.info({ pool: name, backends: backends.map((b) => b.id) }, 'backend set changed');
          this.#waiters.wakeAll();
        }),
      );
    }
    this.#unsubscribe.push(ledger.onRelease((id) => this.#waiters.release(id)));
    const binder = new Binder({
      ledger,
      waiters: this.#waiters,
      admission: () => this.#config.admission,
      metrics,
    });
    const deps = {
      router: () => this.#router,
      pool: (name: string) => this.#pools.get(name),
      binder,
      metrics,
    };
    for (const lc of config.listeners) {
      const listener = new Listener(lc, deps, this.log);
      this.listeners.push(listener);
      const addr = await listener.listen();
      this.addresses.set(lc.name, addr);
      this.log.info({ listener: lc.name, address: `${addr.host}:${addr.port}` }, 'listening');
    }
  }

  /** Stops listening, ends sessions and releases the ledger. */
  async stop(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
    for (const u of this.#unsubscribe.splice(0)) u();
    await Promise.all([...this.#pools.values()].map((p) => p.source.close()));
    await this.ledger.close();
  }
}
