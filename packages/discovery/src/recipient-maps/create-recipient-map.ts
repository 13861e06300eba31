// Builds a recipient map from its config: the driver its section names (file, redis, ldap) inside
// the shared cache and lookup order. The Redis client comes from the caller (the proxy owns ioredis
// and the ledger's connection settings); an LDAP CA file is read here, once.
import { readFileSync } from 'node:fs';
import type { RecipientMapConfig, RedisMapConfig } from '@smtp-lb/config';
import { DiscoveryError } from '../errors.js';
import { FileMap } from './file-map.js';
import { LdapMap } from './ldap-map.js';
import { type LookupOutcome, RecipientMap } from './recipient-map.js';
import { RedisMap } from './redis-map.js';
import type { MapDriver, MapLogger, RedisLookupClient } from './types.js';

export interface RecipientMapDeps {
  logger?: MapLogger;
  /** A client for a redis map, how to close it (undefined when shared), and its first connection. */
  redis?: (config: RedisMapConfig) => {
    client: RedisLookupClient;
    close?: () => Promise<void>;
    ready?: Promise<void>;
  };
  onLookup?: (map: string, outcome: LookupOutcome, seconds?: number) => void;
  /** File maps: stat poll interval (default 1 s). */
  watchIntervalMs?: number;
}

export async function createRecipientMap(
  config: RecipientMapConfig,
  deps: RecipientMapDeps = {},
): Promise<RecipientMap> {
  let map: RecipientMap | undefined;
  const driver = await createDriver(config, deps, () => map?.clearCache());
  map = new RecipientMap({
    name: config.name,
    driver,
    cacheTtlMs: config.cacheTtl,
    negativeCacheTtlMs: config.negativeCacheTtl,
    cacheSize: config.cacheSize,
    recipientDelimiter: config.recipientDelimiter,
    timeoutMs: config.timeout,
    ...(deps.logger ? { logger: deps.logger } : {}),
    ...(deps.onLookup
      ? { onLookup: (outcome, seconds) => deps.onLookup?.(config.name, outcome, seconds) }
      : {}),
  });
  return map;
}

async function createDriver(
  config: RecipientMapConfig,
  deps: RecipientMapDeps,
  changed: () => void,
): Promise<MapDriver> {
  if (config.file !== undefined) {
    return FileMap.open({
      path: config.file,
      onChange: changed,
      ...(deps.logger ? { logger: deps.logger } : {}),
      ...(deps.watchIntervalMs ? { watchIntervalMs: deps.watchIntervalMs } : {}),
    });
  }
  if (config.redis) {
    if (!deps.redis)
      throw new DiscoveryError('DISCOVERY_NO_SOURCE', `recipient map ${config.name}: no Redis client`);
    const { client, close, ready } = deps.redis(config.redis);
    await ready;
    return new RedisMap({
      client,
      prefix: config.redis.prefix,
      ...(config.redis.hash === undefined ? {} : { hash: config.redis.hash }),
      ...(close ? { close } : {}),
    });
  }
  if (config.ldap) {
    let ca: string | undefined;
    if (config.ldap.ca !== undefined) {
      try {
        ca = readFileSync(config.ldap.ca, 'utf8');
      } catch (cause) {
        throw new DiscoveryError('DISCOVERY_CA_UNREADABLE', `cannot read LDAP CA file ${config.ldap.ca}`, {
          cause,
        });
      }
    }
    return new LdapMap({ config: config.ldap, timeoutMs: config.timeout, ...(ca ? { ca } : {}) });
  }
  throw new DiscoveryError('DISCOVERY_NO_SOURCE', `recipient map ${config.name} has no file, redis or ldap`);
}
