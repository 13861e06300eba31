// Recipient maps answer one question per recipient: does the directory know this address, and
// what does it say about it (the pool of its department)? One interface for the file, Redis and
// LDAP drivers; the cache, the lookup order and the timeout are theirs in common (recipient-map.ts).

/** What a driver found for the first key (in lookup order) that it knows. */
export interface MapHit {
  /** The key that matched: the address, the address without its extension, or `@domain`. */
  key: string;
  /** The map's value for it (a pool name); '' when the map has no value (LDAP without `attribute`). */
  value: string;
}

export type MapKind = 'file' | 'redis' | 'ldap';

export interface DriverState {
  /** False while the source cannot answer (file never read, LDAP or Redis failing). */
  up: boolean;
  /** What is wrong, or what was loaded. */
  detail?: string;
  /** Entries held (file maps). */
  entries?: number;
}

/** One driver: a source of key → value answers. Rejects when the source cannot answer. */
export interface MapDriver {
  readonly kind: MapKind;
  /** The first of `keys` (in order) the source knows, or undefined when it knows none. */
  lookup(keys: readonly string[], signal: AbortSignal): Promise<MapHit | undefined>;
  state(): DriverState;
  /** Re-read the source now (SIGHUP); drivers that always read live need nothing. */
  reload?(): Promise<void>;
  close(): Promise<void>;
}

export type LookupResult =
  | { status: 'found'; key: string; value: string; cached: boolean }
  | { status: 'unknown'; cached: boolean }
  /** The map could not answer (down, slow, garbage): neither yes nor no. */
  | { status: 'error'; reason: string };

/** The logging a map does (pino's Logger fits). */
export interface MapLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** The two Redis commands the Redis driver uses; an ioredis Redis or Cluster fits. */
export interface RedisLookupClient {
  get(key: string): Promise<string | null>;
  hmget(key: string, ...fields: string[]): Promise<Array<string | null>>;
}

export interface RecipientMapStatus {
  name: string;
  kind: MapKind;
  /** ok: answering; failing: the last lookup failed or the source is down; idle: nothing asked yet. */
  state: 'ok' | 'failing' | 'idle';
  detail?: string;
  entries?: number;
  cached: number;
  /** ISO time of the last failure, if any. */
  lastError?: string;
}
