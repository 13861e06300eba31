// A pool's backend set as discovery sees it. Static pools and Consul pools produce the same shape;
// the proxy only ever reads `current()` and listens for changes.
import type { ProxyProtocolVersion, TlsMode, XclientMode } from '@smtp-lb/config';

export interface DiscoveredBackend {
  /** `host:port`, stable across updates. */
  id: string;
  host: string;
  port: number;
  /** A host name for TLS (SNI, certificate check) and logs when `host` is an address (an MX host). */
  name?: string;
  weight: number;
  maxConnections: number;
  /** Per-backend overrides of the pool's options. */
  xclient?: XclientMode;
  proxyProtocol?: ProxyProtocolVersion;
  tls?: TlsMode;
}

export interface BackendSource {
  readonly pool: string;
  /** The backends that may take new sessions now. */
  current(): readonly DiscoveredBackend[];
  /** True once a first set is known (static: at once; Consul: after the first answer). */
  readonly ready: boolean;
  /** True while the source cannot reach its origin (Consul) and keeps serving the last known set. */
  readonly stale?: boolean;
  onChange(listener: (backends: readonly DiscoveredBackend[]) => void): () => void;
  close(): Promise<void>;
}

/** The logging a source does (pino's Logger fits): bad meta values, Consul unreachable and back. */
export interface DiscoveryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}
