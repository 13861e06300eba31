// `ledger` config → the Redis target the ledger and the client limits connect to (one of a URL,
// a Redis Cluster or Sentinel, with TLS when `ledger.tls` is set). The PEM files are read here,
// once per start: a node does not start with a TLS file it cannot read.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { LedgerConfig } from '@smtp-lb/config';
import type { RedisTarget } from '@smtp-lb/ledger';

function tlsOptions(config: LedgerConfig): ConnectionOptions | undefined {
  const t = config.tls;
  if (!t) return undefined;
  return {
    ...(t.ca ? { ca: readFileSync(t.ca) } : {}),
    ...(t.cert ? { cert: readFileSync(t.cert) } : {}),
    ...(t.key ? { key: readFileSync(t.key) } : {}),
    ...(t.servername ? { servername: t.servername } : {}),
  };
}

/** Undefined without `redis`, `redisCluster` or `redisSentinel`: counting stays in memory. */
export function redisTarget(config: LedgerConfig): RedisTarget | undefined {
  const tls = tlsOptions(config);
  const withTls = tls ? { tls } : {};
  if (config.redisCluster) return { cluster: config.redisCluster, ...withTls };
  if (config.redisSentinel) {
    const s = config.redisSentinel;
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
  if (config.redis) return tls ? { url: config.redis, tls } : config.redis;
  return undefined;
}
