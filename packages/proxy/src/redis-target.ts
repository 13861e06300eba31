// The Redis targets of the config → what the ledger's createClient connects to (one of a URL, a
// Redis Cluster or Sentinel, with TLS when a `tls` section is set): the ledger and the client limits
// (`ledger`), and the redis recipient maps (their own connection or the ledger's). The PEM files are
// read here, once per start: a node does not start with a TLS file it cannot read.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { LedgerConfig, RedisSentinelConfig, RedisTlsConfig } from '@smtp-lb/config';
import type { RedisTarget } from '@smtp-lb/ledger';

/** One Redis connection as the config gives it: one of url, cluster and sentinel, and TLS. */
export interface RedisConnection {
  url?: string | undefined;
  cluster?: string[] | undefined;
  sentinel?: RedisSentinelConfig | undefined;
  tls?: RedisTlsConfig | undefined;
}

function tlsOptions(t: RedisTlsConfig | undefined): ConnectionOptions | undefined {
  if (!t) return undefined;
  return {
    ...(t.ca ? { ca: readFileSync(t.ca) } : {}),
    ...(t.cert ? { cert: readFileSync(t.cert) } : {}),
    ...(t.key ? { key: readFileSync(t.key) } : {}),
    ...(t.servername ? { servername: t.servername } : {}),
  };
}

/** Undefined without url, cluster or sentinel. */
export function redisTargetOf(c: RedisConnection): RedisTarget | undefined {
  const tls = tlsOptions(c.tls);
  const withTls = tls ? { tls } : {};
  if (c.cluster) return { cluster: c.cluster, ...withTls };
  if (c.sentinel) {
    const s = c.sentinel;
    return {
      sentinels: s.sentinels.map(({ host, port }) => ({ host, port })),
      name: s.masterName,
      username: s.username,
      password: s.password,
      sentinelUsername: s.sentinelUsername,
      sentinelPassword: s.sentinelPassword,
      db: s.db,
      ...withTls,
    };
  }
  if (c.url) return tls ? { url: c.url, tls } : c.url;
  return undefined;
}

/** Undefined without `redis`, `redisCluster` or `redisSentinel`: counting stays in memory. */
export function redisTarget(config: LedgerConfig): RedisTarget | undefined {
  return redisTargetOf({
    url: config.redis,
    cluster: config.redisCluster,
    sentinel: config.redisSentinel,
    tls: config.tls,
  });
}
