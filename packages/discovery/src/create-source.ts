// The one place that turns a pool's config into its backend source, so the proxy does not need to
// know which kinds exist.
import type { ConsulConfig, PoolConfig } from '@smtp-lb/config';
import { ConsulSource } from './consul-source.js';
import { DiscoveryError } from './errors.js';
import { StaticSource } from './static-source.js';
import type { BackendSource, DiscoveryLogger } from './types.js';

export interface SourceDefaults {
  defaultMaxConnections: number;
  logger?: DiscoveryLogger;
  onError?: (err: DiscoveryError) => void;
  onStaleChange?: (stale: boolean) => void;
}

export function createSource(
  pool: PoolConfig,
  consul: ConsulConfig | undefined,
  defaults: SourceDefaults,
): BackendSource {
  if (pool.static) return new StaticSource(pool.name, pool.static);
  // Their backends depend on each message (MX) or session (original destination): none in advance.
  if (pool.mx || pool.originalDestination) return new StaticSource(pool.name, []);
  if (pool.consul) {
    if (!consul) {
      throw new DiscoveryError(
        'DISCOVERY_NO_CONSUL',
        `pool ${pool.name} uses consul but no consul agent is configured`,
      );
    }
    const datacenter = pool.consul.datacenter ?? consul.datacenter;
    return new ConsulSource({
      pool: pool.name,
      service: pool.consul.service,
      ...(pool.consul.tag ? { tag: pool.consul.tag } : {}),
      ...(datacenter ? { datacenter } : {}),
      consul: {
        address: consul.address,
        ...(consul.token ? { token: consul.token } : {}),
        ...(consul.ca ? { ca: consul.ca } : {}),
      },
      ...defaults,
    });
  }
  throw new DiscoveryError(
    'DISCOVERY_NO_SOURCE',
    `pool ${pool.name} has no static backends, consul, mx or originalDestination`,
  );
}
