// A recipient map in Redis, shared by every node and read live (a change is seen once the nodes'
// cached answers expire): keys `<prefix><key>` (`GET`, one per lookup key, sent together), or one
// hash (`HMGET <hash> <keys...>`, one round trip). The client is the proxy's (ioredis), passed in.
import type { DriverState, MapDriver, MapHit, RedisLookupClient } from './types.js';

export interface RedisMapOptions {
  client: RedisLookupClient;
  prefix: string;
  hash?: string;
  /** Closes the client, when the map owns it. */
  close?: () => Promise<void>;
}

export class RedisMap implements MapDriver {
  readonly kind = 'redis' as const;
  readonly #opts: RedisMapOptions;

  constructor(opts: RedisMapOptions) {
    this.#opts = opts;
  }

  async lookup(keys: readonly string[]): Promise<MapHit | undefined> {
    const { client, prefix, hash } = this.#opts;
    if (keys.length === 0) return undefined;
    const values =
      hash === undefined
        ? await Promise.all(keys.map((k) => client.get(prefix + k)))
        : await client.hmget(hash, ...keys);
    for (let i = 0; i < keys.length; i++) {
      const value = values[i];
      if (typeof value === 'string') return { key: keys[i]!, value };
    }
    return undefined;
  }

  state(): DriverState {
    const { prefix, hash } = this.#opts;
    return { up: true, detail: hash === undefined ? `keys ${prefix}*` : `hash ${hash}` };
  }

  async close(): Promise<void> {
    await this.#opts.close?.();
  }
}
