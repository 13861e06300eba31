export { createRecipientMap, type RecipientMapDeps } from './create-recipient-map.js';
export { FileMap, type FileMapOptions } from './file-map.js';
export { escapeFilterValue, expandFilter } from './ldap-filter.js';
export { LdapMap, type LdapMapOptions } from './ldap-map.js';
export { lookupKeys } from './lookup-keys.js';
export { type MapFileProblem, type ParsedMapFile, parseMapFile } from './map-file-parser.js';
export { type LookupOutcome, RecipientMap, type RecipientMapOptions } from './recipient-map.js';
export { RedisMap, type RedisMapOptions } from './redis-map.js';
export type * from './types.js';
