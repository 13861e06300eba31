export { backendId } from './backend-id.js';
export { type ConsulHealthEntry, sameBackends, toBackends } from './consul-entry.js';
export { ConsulSource, type ConsulSourceOptions, nextIndex } from './consul-source.js';
export { createSource, type SourceDefaults } from './create-source.js';
export { DnsClient, type DnsClientOptions, type DnsRecord, type DnsResult, RCODE } from './dns-client.js';
export { DiscoveryError, type DiscoveryErrorCode } from './errors.js';
export {
  type DnsFailure,
  type MxAddress,
  type MxLookup,
  MxResolver,
  type MxResolverOptions,
  orderMx,
} from './mx-resolver.js';
export * from './recipient-maps/index.js';
export { StaticSource } from './static-source.js';
export type * from './types.js';
