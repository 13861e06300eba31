// The node's recipient maps (discovery's RecipientMap, one per `recipientMaps` entry): built at
// start with their metrics and, for redis maps, a Redis client of their own, made by the ledger's
// createClient from the same kinds of target (URL, Cluster, Sentinel, TLS; redis-target.ts): no
// offline queue, so a lookup while Redis is away fails at once and the map's caller answers 451.
// A reload builds the maps whose settings changed and re-reads the others (SIGHUP re-reads files).
import type { RecipientMapConfig, RedisMapConfig } from '@smtp-lb/config';
import { createRecipientMap, type RecipientMap, type RecipientMapStatus } from '@smtp-lb/discovery';
import { createClient, disconnectClient } from '@smtp-lb/ledger';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { redisTargetOf } from './redis-target.js';

interface Entry {
  config: RecipientMapConfig;
  map: RecipientMap;
}

/** How long start-up waits for a redis map's first connection (lookups fail with 451 until then). */
const REDIS_READY_MS = 3000;

export class RecipientMaps {
  #maps = new Map<string, Entry>();
  readonly #log: Logger;
  readonly #metrics: Metrics;

  private constructor(log: Logger, metrics: Metrics) {
    this.#log = log;
    this.#metrics = metrics;
  }

  static async create(
    configs: Record<string, RecipientMapConfig> | undefined,
    log: Logger,
    metrics: Metrics,
  ): Promise<RecipientMaps> {
    const maps = new RecipientMaps(log.child({ component: 'recipient-maps' }), metrics);
    await maps.update(configs);
    return maps;
  }

  get(name: string): RecipientMap | undefined {
    return this.#maps.get(name)?.map;
  }

  status(): RecipientMapStatus[] {
    return [...this.#maps.values()].map((e) => e.map.status());
  }

  /** Start or SIGHUP: new and changed maps are built, the others re-read; removed ones closed. */
  async update(configs: Record<string, RecipientMapConfig> | undefined): Promise<void> {
    const next = new Map<string, Entry>();
    const retired: RecipientMap[] = [];
    try {
      for (const [name, config] of Object.entries(configs ?? {})) {
        const old = this.#maps.get(name);
        if (old && JSON.stringify(old.config) === JSON.stringify(config)) {
          await old.map.reload();
          next.set(name, old);
          continue;
        }
        next.set(name, { config, map: await this.#create(config) });
        if (old) retired.push(old.map);
      }
    } catch (err) {
      // Keep the running set; close what this attempt built.
      for (const [name, e] of next) if (this.#maps.get(name) !== e) await e.map.close();
      throw err;
    }
    for (const [name, e] of this.#maps) if (!next.has(name)) retired.push(e.map);
    this.#maps = next;
    await Promise.all(retired.map((m) => m.close()));
  }

  #create(config: RecipientMapConfig): Promise<RecipientMap> {
    const m = this.#metrics;
    return createRecipientMap(config, {
      logger: this.#log,
      redis: (rc) => redisMapClient(config.name, rc),
      onLookup: (map, outcome, seconds) => {
        m.recipientLookups.inc({ map, result: outcome });
        if (seconds !== undefined) m.recipientLookupSeconds.observe({ map }, seconds);
      },
    });
  }

  async close(): Promise<void> {
    const maps = [...this.#maps.values()];
    this.#maps = new Map();
    await Promise.all(maps.map((e) => e.map.close()));
  }
}

/**
 * A redis map's client: the ledger's createClient (no offline queue, no retries of a command) on
 * the map's target, ready when connected or after REDIS_READY_MS (lookups fail with 451 until then).
 */
export function redisMapClient(name: string, rc: RedisMapConfig) {
  const target = redisTargetOf(rc);
  if (!target) throw new Error(`recipient map ${name}: no Redis to connect to`);
  const client = createClient(target, {
    subscriber: false,
    idempotentReads: true,
    connectionName: `smtp-lb-rcptmap-${name}`,
    connectTimeoutMs: REDIS_READY_MS,
  });
  // Failures reach the sessions as failed lookups (logged by the map); the client's own error
  // events would otherwise be unhandled.
  client.on('error', () => {});
  const ready = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, REDIS_READY_MS);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  // disconnectClient: a socket ended mid TLS handshake must not crash the node (as the ledger's).
  return { client, ready, close: async () => disconnectClient(client) };
}
