// The resolved configuration every other package works with: defaults filled in, `${VAR}` expanded,
// durations in milliseconds, sizes in bytes, addresses split into host and port. The YAML shape
// (and its JSON Schema) lives in schema.ts; load.ts turns one into the other.

export interface HostPort {
  host: string;
  port: number;
}

export type TlsMode = 'none' | 'opportunistic' | 'required';
export type ProxyProtocolVersion = 'off' | 'v1' | 'v2';
export type XclientMode = 'auto' | 'off';
export type BareNewlines = 'normalize' | 'reject';
export type NulBytes = 'reject' | 'strip';
export type LongLines = 'reject' | 'pass';
export type BalancingPolicyName =
  | 'least-connections'
  | 'weighted-least-connections'
  | 'weighted-round-robin'
  | 'power-of-two-choices';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface ListenerTls {
  /** PEM file paths. */
  cert: string;
  key: string;
  /** TLS from the first byte (port 465) instead of STARTTLS. */
  implicit: boolean;
}

export interface ListenerTimeouts {
  /** No bytes from the client for this long ends the session (RFC 5321 4.5.3.2.7: 5 min). */
  idle: number;
  /**
   * A command line must be complete this long after its first byte, and DATA gets at most this much
   * time in hand (Postfix smtpd_per_request_deadline): bytes that trickle in do not keep it open.
   */
  command: number;
  /** Bytes/s in DATA: each chunk adds its size / this to the time in hand (0: off; smtpd_min_data_rate). */
  minDataRate: number;
}

export interface ListenerProxyProtocol {
  trusted: string[];
  /** A trusted peer must have sent its whole header within this (ms). */
  timeout: number;
}

export type ListenerRole = 'inbound' | 'submission' | 'outbound';
export type AuthVerify = 'backend' | 'file' | 'http';

export interface AuthFailuresConfig {
  /** Failed AUTH per client address per window, cluster-wide; 0 is off. */
  perClient: number;
  /** Failed AUTH per user name per window, cluster-wide; 0 is off. */
  perUser: number;
  window: number;
  action: 'reject' | 'tarpit';
}

export interface ListenerAuthConfig {
  /** MAIL needs a successful AUTH first. */
  required: boolean;
  verify: AuthVerify;
  /** htpasswd file (bcrypt lines), for verify: file. */
  file?: string;
  http?: { url: string; timeout: number };
  /** verify: backend: the whole SASL exchange with the backend (ms). */
  timeout: number;
  /** AUTH offered without TLS (loopback tests). */
  allowPlaintext: boolean;
  /** Successful verifications remembered this long (ms); 0 is off. */
  cacheTtl: number;
  failures: AuthFailuresConfig;
}

export interface ListenerConfig {
  name: string;
  role: ListenerRole;
  /** SASL AUTH (submission and outbound listeners only). */
  auth?: ListenerAuthConfig;
  /** Outbound listeners: the CIDRs of the operator's hosts that may send through it (no open relay). */
  clients?: string[];
  listen: HostPort;
  /** Greeting and EHLO name. */
  hostname: string;
  /** Pool used when no route matches. */
  pool: string;
  maxMessageSize: number;
  /** RFC 5321 4.5.3.1.8: at least 100. */
  maxRecipients: number;
  bareNewlines: BareNewlines;
  /** NUL in DATA: reject the message (550 5.6.0), or remove it before the content is framed. */
  nulBytes: NulBytes;
  /**
   * A DATA line over 998 octets (RFC 5322 2.1.1): reject the message (550 5.6.0), or pass it as it
   * is (only safe when every backend reads lines of any length: see the README on smuggling).
   */
  longLines: LongLines;
  /**
   * DSN (RFC 3461) in the EHLO reply. Offered, its parameters go to a bound backend that offers DSN;
   * where it does not, NOTIFY=NEVER/SUCCESS are refused (555 5.5.4) and the rest left out (README
   * "DSN"); off, they are all refused at once (as by Postfix with `smtpd_discard_ehlo_keywords =
   * dsn`), and the client handles DSN itself.
   */
  dsn: boolean;
  /** CIDRs whose connections must start with a PROXY header; absent: PROXY not accepted. */
  proxyProtocol?: ListenerProxyProtocol;
  tls?: ListenerTls;
  timeouts: ListenerTimeouts;
  /** Maximum concurrent client sessions on this listener (per node). */
  maxSessions: number;
  /** Content scanners (names in `scanners`) every message waits for; empty: none. */
  scan: string[];
  /** Recipient verification at RCPT against a recipient map, before any backend is bound. */
  recipients?: ListenerRecipients;
}

export interface ListenerRecipients {
  /** A name in `recipientMaps`. */
  map: string;
  /** A recipient the map does not know: 550 5.1.1 at once, or passed on to the backend (counted only). */
  unknown: 'reject' | 'pass';
}

export interface BackendTimeouts {
  connect: number;
  /** Wait for the 220 greeting. */
  greeting: number;
  /** EHLO, XCLIENT, STARTTLS, MAIL, RCPT, RSET, QUIT replies. */
  command: number;
  /** Reply to DATA (354). */
  dataStart: number;
  /** Reply after the final dot (RFC 5321 4.5.3.2.6: 10 min). */
  dataDone: number;
}

export interface BackendTlsSettings {
  mode: TlsMode;
  /** Verify the backend's certificate chain and name (default true). */
  verify: boolean;
  /** PEM file of extra CAs to trust. */
  ca?: string;
  /** SNI / name to check; defaults to the backend host. */
  servername?: string;
}

/** One backend as listed in a static pool; discovery produces the same fields. */
export interface StaticBackend {
  address: HostPort;
  weight: number;
  maxConnections: number;
  xclient?: XclientMode;
  proxyProtocol?: ProxyProtocolVersion;
  tls?: TlsMode;
}

export interface ConsulPoolSource {
  service: string;
  tag?: string;
  datacenter?: string;
}

/** Where an `mx` or `originalDestination` pool may connect, and how many connections per host. */
export interface DestinationLimits {
  /** CIDRs never connected to (the node's own listeners are refused besides). */
  denyDestinations: string[];
  /** Cap of a destination host not listed in `hosts`. */
  maxConnections: number;
  /** Caps by IP address or MX host name (lower case). */
  hosts: Array<{ host: string; maxConnections: number }>;
}

export interface MxPoolSource extends DestinationLimits {
  port: number;
  /** DNS servers asked in order; empty: the system's. */
  resolvers: HostPort[];
  /** Per query and server (ms). */
  timeout: number;
  /** Addresses of MX hosts tried per domain. */
  maxHosts: number;
  /** Longest time an answer is cached (ms), whatever its TTL. */
  maxTtl: number;
}

export type OriginalDestinationSource = DestinationLimits;

export interface PoolConfig {
  name: string;
  /** Exactly one of static, consul, mx and originalDestination is set. */
  static?: StaticBackend[];
  consul?: ConsulPoolSource;
  /** The recipient domain's MX hosts. */
  mx?: MxPoolSource;
  /** The destination of the trusted PROXY v2 header. */
  originalDestination?: OriginalDestinationSource;
  xclient: XclientMode;
  proxyProtocol: ProxyProtocolVersion;
  tls: BackendTlsSettings;
  timeouts: BackendTimeouts;
  /** Further backends tried when connect, greeting or EHLO fails at one (bounded retries). */
  connectRetries: number;
  /** Name we give in EHLO to the backend; defaults to the listener's hostname. */
  heloName?: string;
  /** Reply-aware ejection of backends (static and consul pools); absent: off. */
  outlierDetection?: OutlierDetectionConfig;
}

/** Durations in ms; the balancer's OutlierDetectionOptions. */
export interface OutlierDetectionConfig {
  window: number;
  minimumVolume: number;
  deferralPercent: number;
  consecutiveFailures: number;
  baseEjectionTime: number;
  maxEjectionTime: number;
  maxEjectedPercent: number;
}

export interface RouteConfig {
  /** Exact domain or `*.example.com` (any subdomain). */
  recipientDomain?: string;
  /** A name in `recipientMaps`: the route matches recipients the map knows. */
  recipientMap?: string;
  senderDomain?: string;
  listener?: string;
  /** With `recipientMap` and no pool here, each recipient's pool is the map's value (pool ''). */
  pool: string;
}

export interface BalancingConfig {
  policy: BalancingPolicyName;
  defaultMaxConnections: number;
}

export interface AdmissionConfig {
  /** Wait for a free slot this long, then 451 4.3.2. */
  queueTimeout: number;
  /** Waiting sessions per node beyond which the answer is immediate. */
  maxWaiting: number;
}

export interface RedisSentinelConfig {
  sentinels: HostPort[];
  masterName: string;
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  db: number;
}

/** Paths of PEM files; the proxy reads them. */
export interface RedisTlsConfig {
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
}

export interface LedgerConfig {
  /** Absent (and no redisCluster / redisSentinel): in-memory ledger (one node). */
  redis?: string;
  /** Seed nodes of a Redis Cluster (instead of `redis`). */
  redisCluster?: string[];
  /** A master found through Sentinel (instead of `redis`). */
  redisSentinel?: RedisSentinelConfig;
  /** TLS to every Redis connection (and the sentinels). */
  tls?: RedisTlsConfig;
  leaseTtl: number;
  onRedisDown: 'local-share' | 'reject';
  /** Key prefix (all keys also carry one hash tag). */
  keyPrefix: string;
}

export interface ConsulConfig {
  address: string;
  token?: string;
  datacenter?: string;
  /** PEM CA file for an HTTPS agent. */
  ca?: string;
}

export interface AdminConfig {
  listen: HostPort;
  /** Bearer token required for /status when set. */
  token?: string;
}

/** What happens to a client over a limit, or caught by a check: refused now, or slowed down. */
export type ShapingAction = 'reject' | 'tarpit';

/** A rate: at most `limit` events per `window` ms (sliding window); limit 0 is off. */
export interface RateLimit {
  limit: number;
  window: number;
}

export interface ClientLimitsConfig {
  /** Concurrent sessions per client address, cluster-wide; 0 is off. */
  sessionsPerAddress: number;
  /** Concurrent sessions per /24 (IPv4) or /64 (IPv6), cluster-wide; 0 is off. */
  sessionsPerPrefix: number;
  /** New connections per client address. */
  connectionRate: RateLimit;
  /** Mail transactions (MAIL FROM) per client address. */
  messageRate: RateLimit;
  /** Over a limit: 421 4.7.0 and close, or the tarpit. */
  action: ShapingAction;
}

export interface TarpitConfig {
  /** Every reply of a tarpitted session is held this long (ms). */
  delay: number;
  /** Tarpitted sessions per node; beyond it they get 421 4.7.0. */
  maxSessions: number;
  /** RCPT replies >= 400 in one session that tarpit it; 0 is off. */
  rejectedRecipients: number;
}

export interface GreetingConfig {
  /** Wait this long before the 220 greeting, watching for early talkers; 0 is off. */
  delay: number;
  /** A client that talks before the greeting: 554 5.5.1 and close, or the tarpit. */
  earlyTalker: ShapingAction;
}

export interface DnsblZone {
  zone: string;
  /** Added to the score when the zone lists the client; negative for allow lists (DNSWL). */
  weight: number;
  /** Only these answers count (`127.0.0.2`, `127.0.0.[2..11]`, `127.0.[0..255].[3;5]`); empty: any. */
  codes: string[];
}

export interface DnsblConfig {
  zones: DnsblZone[];
  /** A score at or above this is a listed client. */
  threshold: number;
  action: ShapingAction;
  /** DNS servers (host:port); empty: the system's. */
  resolvers: HostPort[];
  /** Per query; a zone that does not answer in time counts 0 (fail open). */
  timeout: number;
  /** How long a "not listed" answer is cached (ms); listed answers keep their record TTL. */
  negativeTtl: number;
}

export type PolicyStage = 'rcpt' | 'data';

export interface PolicyConfig {
  /** Postfix policy delegation server (host:port). */
  address: HostPort;
  timeout: number;
  at: PolicyStage[];
  /** No answer in time or a broken connection: accept (fail open) or defer with 451 4.3.5. */
  onError: 'accept' | 'defer';
}

export interface ShapingConfig {
  /** Clients (CIDRs) exempt from limits, DNSBL, greeting delay and tarpit. */
  allow: string[];
  limits: ClientLimitsConfig;
  tarpit: TarpitConfig;
  greeting: GreetingConfig;
  dnsbl?: DnsblConfig;
  policy?: PolicyConfig;
}

export interface SendersConfig {
  limits: { messages: RateLimit; recipients: RateLimit; sessions: number };
  onExceed: 'reject' | 'suspend';
  ownAddresses: boolean;
}

export type LdapScope = 'base' | 'one' | 'sub';

export interface LdapMapConfig {
  /** `ldap://host:port` or `ldaps://host:port`. */
  url: string;
  base: string;
  /** RFC 4515 filter with `%s` (address), `%u` (local part), `%d` (domain), `%%`; values escaped. */
  filter: string;
  scope: LdapScope;
  /** The attribute whose first value is the map's answer (a pool name); absent: found means known. */
  attribute?: string;
  bindDn?: string;
  bindPassword?: string;
  /** PEM file of CAs for ldaps:// or STARTTLS. */
  ca?: string;
  /** STARTTLS on an ldap:// URL before binding. */
  startTls: boolean;
  /** Check the server's certificate chain and name. */
  verify: boolean;
  /** Connections kept open per node, each bound once. */
  connections: number;
}

/** Where a redis map's client connects: one of url, cluster and sentinel (its own or the ledger's). */
export interface RedisMapConfig {
  /** redis:// or rediss:// URL. */
  url?: string;
  /** Seed nodes of a Redis Cluster. */
  cluster?: string[];
  /** A master found through Sentinel. */
  sentinel?: RedisSentinelConfig;
  /** TLS to every connection (and the sentinels): the map's own, or the ledger's with its target. */
  tls?: RedisTlsConfig;
  /** Keys mode: `GET <prefix><key>`; unused when `hash` is set. */
  prefix: string;
  /** Hash mode: `HGET <hash> <key>`. */
  hash?: string;
}

/** One recipient map: exactly one of file, redis and ldap is set. */
export interface RecipientMapConfig {
  name: string;
  /** Postfix-style lines `key value` (absolute path). */
  file?: string;
  redis?: RedisMapConfig;
  ldap?: LdapMapConfig;
  /** Found answers are cached per node this long (ms); 0 is no cache. */
  cacheTtl: number;
  /** "Not found" answers, usually shorter (ms). */
  negativeCacheTtl: number;
  /** Most answers cached per node. */
  cacheSize: number;
  /** Characters that start an address extension (`alice+tag@`); '' turns extensions off. */
  recipientDelimiter: string;
  /** A lookup not answered within this fails (ms). */
  timeout: number;
}

/** A content scanner: exactly one of `rspamd` and `milter` is set. */
export interface ScannerConfig {
  name: string;
  /** rspamd's normal worker, HTTP `POST /checkv2`. */
  rspamd?: { url: string };
  /** A milter (rspamd's proxy worker, OpenDKIM, clamav-milter...). */
  milter?: { address: HostPort };
  /** The verdict must be in this long after the client's final dot (and each content chunk taken within it). */
  timeout: number;
  /** Scanner down, slow or answering garbage: accept unscanned, defer (451 4.3.5) or reject (554 5.7.1). */
  onError: 'accept' | 'defer' | 'reject';
  /** Larger messages pass unscanned (counted). */
  maxSize: number;
}

/** Per client host of outbound listeners, cluster-wide (issue 14). */
export interface HostsConfig {
  limits: { messages: RateLimit; recipients: RateLimit; domains: RateLimit };
  /** 5xx replies to RCPT and at the end of DATA; over it the host is locked out. */
  rejections: RateLimit;
  onExceed: 'reject' | 'lockout';
  /** How long a lock-out lasts (ms). */
  lockout: number;
}

export interface SmtpLbConfig {
  node: { id: string };
  listeners: ListenerConfig[];
  pools: Record<string, PoolConfig>;
  routes: RouteConfig[];
  balancing: BalancingConfig;
  admission: AdmissionConfig;
  ledger: LedgerConfig;
  consul?: ConsulConfig;
  admin: AdminConfig;
  log: { level: LogLevel };
  /** SIGTERM: finish transactions within this, then exit. */
  drainTimeout: number;
  /** Per-client limits, tarpit, early talkers, DNSBL and the policy service (all off by default). */
  shaping: ShapingConfig;
  /** Per authenticated user, cluster-wide: limits, suspension, own addresses. */
  senders: SendersConfig;
  /** Per client host of outbound listeners: limits and lock-out. */
  hosts: HostsConfig;
  /** Recipient maps by name (routes by map, recipient verification); absent: none. */
  recipientMaps?: Record<string, RecipientMapConfig>;
  /** Content scanners by name (listeners refer to them with `scan`). */
  scanners: Record<string, ScannerConfig>;
}
