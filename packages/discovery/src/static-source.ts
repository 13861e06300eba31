// A pool whose backends are listed in the config file: known at once, never changes (a config reload
// builds a new source).
import type { StaticBackend } from '@smtp-lb/config';
import { backendId } from './backend-id.js';
import type { BackendSource, DiscoveredBackend } from './types.js';

export class StaticSource implements BackendSource {
  readonly pool: string;
  readonly ready = true;
  readonly stale = false;
  readonly #backends: readonly DiscoveredBackend[];

  constructor(pool: string, backends: readonly StaticBackend[]) {
    this.pool = pool;
    this.#backends = Object.freeze(
      backends.map((b) => {
        const d: DiscoveredBackend = {
          id: backendId(b.address.host, b.address.port),
          host: b.address.host,
          port: b.address.port,
          weight: b.weight,
          maxConnections: b.maxConnections,
        };
        if (b.xclient !== undefined) d.xclient = b.xclient;
        if (b.proxyProtocol !== undefined) d.proxyProtocol = b.proxyProtocol;
        if (b.tls !== undefined) d.tls = b.tls;
        return Object.freeze(d);
      }),
    );
  }

  current(): readonly DiscoveredBackend[] {
    return this.#backends;
  }

  onChange(_listener: (backends: readonly DiscoveredBackend[]) => void): () => void {
    return () => {};
  }

  async close(): Promise<void> {}
}
