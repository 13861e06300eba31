export { backendId } from './backend-id.js';
export { type ConsulHealthEntry, sameBackends, toBackends } from './consul-entry.js';
export { ConsulSource, type ConsulSourceOptions, nextIndex } from './consul-source.js';
export { createSource, type SourceDefaults } from './create-source.js';
export { DiscoveryError, type DiscoveryErrorCode } from './errors.js';
export * from './recipient-maps/index.js';
export { StaticSource } from './static-source.js';
export type * from './types.js';
