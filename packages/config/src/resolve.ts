// Raw file → SmtpLbConfig: fills defaults, converts units, splits addresses and checks what the
// schema cannot (references between sections, conflicts, ranges). It reads the raw value
// defensively, so it still finds its own errors in a file that also has schema errors.
import { hostname as osHostname } from 'node:os';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { DEFAULTS, MIN_LEASE_TTL } from './defaults.js';
import type { Issues, PathSegment } from './errors.js';
import type {
  AuthFailuresConfig,
  AuthVerify,
  BackendTimeouts,
  BackendTlsSettings,
  BalancingConfig,
  ConsulConfig,
  DestinationLimits,
  DnsblConfig,
  HostPort,
  HostsConfig,
  LdapScope,
  LedgerConfig,
  ListenerAuthConfig,
  ListenerConfig,
  ListenerRole,
  MxPoolSource,
  OutlierDetectionConfig,
  PolicyConfig,
  PoolConfig,
  RateLimit,
  RecipientMapConfig,
  RedisMapConfig,
  RedisSentinelConfig,
  RedisTlsConfig,
  RouteConfig,
  ScannerConfig,
  SendersConfig,
  ShapingAction,
  ShapingConfig,
  SmtpLbConfig,
  StaticBackend,
  TlsMode,
} from './model.js';
import {
  type Parsed,
  parseCidr,
  parseDnsblCode,
  parseDuration,
  parseHostPort,
  parseSize,
  parseUrl,
} from './units.js';
import { isPlainObject } from './validate.js';

export interface ResolveOptions {
  /** The config file's path: relative file paths in it are taken from its folder. */
  source?: string;
  /** For the defaults of `node.id` and `listeners[].hostname` (tests pin them). */
  hostname?: string;
  pid?: number;
}

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj => (isPlainObject(v) ? v : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const optional = <K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } =>
  (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };

const WILDCARDS = new Set(['0.0.0.0', '::']);
const LOOPBACK = /^(?:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/i;

const POOL_KINDS = ['static', 'consul', 'mx', 'originalDestination'] as const;

/**
 * Where a destination pool never connects unless told otherwise: loopback, link-local, unspecified
 * and multicast (RFC 6890), and the operator's own networks (outbound listeners' `clients`).
 */
export const DEFAULT_DENY_DESTINATIONS = [
  '127.0.0.0/8',
  '::1/128',
  '169.254.0.0/16',
  'fe80::/10',
  '0.0.0.0/8',
  '::/128',
  '224.0.0.0/4',
  'ff00::/8',
] as const;

export function resolveConfig(raw: unknown, issues: Issues, options: ResolveOptions = {}): SmtpLbConfig {
  return new Resolver(issues, options).config(obj(raw));
}

class Resolver {
  private readonly host: string;

  constructor(
    private readonly issues: Issues,
    private readonly options: ResolveOptions,
  ) {
    this.host = options.hostname ?? osHostname();
  }

  config(raw: Obj): SmtpLbConfig {
    const balancing = this.balancing(obj(raw.balancing));
    const consulRaw = obj(raw.consul);
    const poolsRaw = obj(raw.pools);
    const pools: Record<string, PoolConfig> = {};
    for (const [name, pool] of Object.entries(poolsRaw)) {
      pools[name] = this.pool(['pools', name], name, obj(pool), balancing, str(consulRaw.datacenter));
    }
    const poolNames = isPlainObject(raw.pools) ? Object.keys(poolsRaw) : undefined;
    const ledger = this.ledger(obj(raw.ledger));
    const recipientMaps = this.recipientMaps(raw.recipientMaps, ledger);
    const maps = { names: Object.keys(recipientMaps ?? {}), all: recipientMaps ?? {} };
    const scannerNames = isPlainObject(raw.scanners) ? Object.keys(raw.scanners) : [];
    const listeners = list(raw.listeners).map((l, i) =>
      this.listener(['listeners', i], obj(l), poolNames, maps.names, scannerNames),
    );
    this.checkListenerConflicts(listeners);
    this.denyOperatorNetworks(poolsRaw, pools, listeners);
    const admin = {
      listen: this.address(['admin', 'listen'], obj(raw.admin).listen ?? DEFAULTS.admin.listen, true),
      ...optional('token', str(obj(raw.admin).token)),
    };
    this.checkAdminConflict(admin.listen, listeners);
    const usesConsul = Object.values(pools).some((p) => p.consul !== undefined);
    return {
      node: { id: str(obj(raw.node).id) ?? `${this.host}-${this.options.pid ?? process.pid}` },
      listeners,
      pools,
      routes: list(raw.routes).map((r, i) =>
        this.route(
          ['routes', i],
          obj(r),
          poolNames,
          Array.isArray(raw.listeners) ? listeners : undefined,
          maps.all,
        ),
      ),
      balancing,
      admission: {
        queueTimeout: this.duration(
          ['admission', 'queueTimeout'],
          obj(raw.admission).queueTimeout,
          DEFAULTS.admission.queueTimeout,
        ),
        maxWaiting: num(obj(raw.admission).maxWaiting, DEFAULTS.admission.maxWaiting),
      },
      ledger,
      ...optional('consul', raw.consul !== undefined || usesConsul ? this.consul(consulRaw) : undefined),
      admin,
      log: { level: (str(obj(raw.log).level) ?? DEFAULTS.log.level) as SmtpLbConfig['log']['level'] },
      drainTimeout: this.duration(['drainTimeout'], raw.drainTimeout, DEFAULTS.drainTimeout),
      shaping: this.shaping(obj(raw.shaping)),
      senders: this.senders(obj(raw.senders)),
      hosts: this.hosts(obj(raw.hosts)),
      ...optional('recipientMaps', recipientMaps),
      scanners: this.scanners(obj(raw.scanners)),
    };
  }

  private senders(raw: Obj): SendersConfig {
    const d = DEFAULTS.senders;
    const limits = obj(raw.limits);
    const rate = (key: string): RateLimit => {
      const r = obj(limits[key]);
      return {
        limit: num(r.limit, d.rateLimit),
        window: this.duration(['senders', 'limits', key, 'window'], r.window, d.window, '1s'),
      };
    };
    return {
      limits: {
        messages: rate('messages'),
        recipients: rate('recipients'),
        sessions: num(limits.sessions, d.sessions),
      },
      onExceed: (str(raw.onExceed) ?? d.onExceed) as SendersConfig['onExceed'],
      ownAddresses: typeof raw.ownAddresses === 'boolean' ? raw.ownAddresses : d.ownAddresses,
    };
  }

  private hosts(raw: Obj): HostsConfig {
    const d = DEFAULTS.hosts;
    const rate = (at: PathSegment[], value: unknown): RateLimit => {
      const r = obj(value);
      return {
        limit: num(r.limit, d.rateLimit),
        window: this.duration([...at, 'window'], r.window, d.window, '1s'),
      };
    };
    const limits = obj(raw.limits);
    return {
      limits: {
        messages: rate(['hosts', 'limits', 'messages'], limits.messages),
        recipients: rate(['hosts', 'limits', 'recipients'], limits.recipients),
        domains: rate(['hosts', 'limits', 'domains'], limits.domains),
      },
      rejections: rate(['hosts', 'rejections'], raw.rejections),
      onExceed: (str(raw.onExceed) ?? d.onExceed) as HostsConfig['onExceed'],
      lockout: this.duration(['hosts', 'lockout'], raw.lockout, d.lockout, '1s'),
    };
  }

  /** AUTH belongs to submission and outbound listeners; a submission listener cannot do without it. */
  private auth(
    at: PathSegment[],
    raw: Obj,
    role: ListenerRole,
    hasTls: boolean,
    listen: HostPort,
  ): ListenerAuthConfig | undefined {
    const present = isPlainObject(raw.auth);
    if (role === 'inbound') {
      if (present)
        this.issues.add(
          [...at, 'auth'],
          'ECONFLICT',
          'AUTH is never offered on an inbound listener (set role: submission or outbound)',
        );
      return undefined;
    }
    if (!present) {
      if (role === 'submission')
        this.issues.add([...at, 'auth'], 'EREQUIRED', 'a submission listener needs auth');
      return undefined;
    }
    const a = obj(raw.auth);
    const d = DEFAULTS.auth;
    const verify = (str(a.verify) ?? 'file') as AuthVerify;
    if (verify === 'file' && a.file === undefined)
      this.issues.add([...at, 'auth', 'file'], 'EREQUIRED', 'verify: file needs file');
    if (verify === 'http' && !isPlainObject(a.http))
      this.issues.add([...at, 'auth', 'http'], 'EREQUIRED', 'verify: http needs http.url');
    const allowPlaintext = a.allowPlaintext === true;
    if (!hasTls && !allowPlaintext) {
      this.issues.add(
        [...at, 'auth'],
        'EREQUIRED',
        'AUTH is offered only under TLS: set tls, or auth.allowPlaintext for loopback tests',
      );
    }
    // DESIGN.md invariant 8: passwords in plaintext only where they never leave the machine.
    if (allowPlaintext && listen.host !== '' && !LOOPBACK.test(listen.host)) {
      this.issues.add(
        [...at, 'auth', 'allowPlaintext'],
        'EVALUE',
        `only for a loopback listener (127.0.0.0/8, ::1, localhost), not ${listen.host}`,
      );
    }
    const http = isPlainObject(a.http) ? a.http : undefined;
    const f = obj(a.failures);
    return {
      required: typeof a.required === 'boolean' ? a.required : role === 'submission',
      verify,
      ...optional('file', a.file === undefined ? undefined : this.file(a.file)),
      ...optional(
        'http',
        http && {
          url: this.parsed([...at, 'auth', 'http', 'url'], parseUrl(http.url, ['http:', 'https:']), ''),
          timeout: this.duration([...at, 'auth', 'http', 'timeout'], http.timeout, d.httpTimeout, '1ms'),
        },
      ),
      timeout: this.duration([...at, 'auth', 'timeout'], a.timeout, d.backendTimeout, '1ms'),
      allowPlaintext,
      cacheTtl: this.duration([...at, 'auth', 'cacheTtl'], a.cacheTtl, d.cacheTtl),
      failures: {
        perClient: num(f.perClient, d.failures.perClient),
        perUser: num(f.perUser, d.failures.perUser),
        window: this.duration([...at, 'auth', 'failures', 'window'], f.window, d.failures.window, '1s'),
        action: (str(f.action) ?? d.failures.action) as AuthFailuresConfig['action'],
      },
    };
  }

  private recipientMaps(raw: unknown, ledger: LedgerConfig): Record<string, RecipientMapConfig> | undefined {
    if (!isPlainObject(raw)) return undefined;
    const maps: Record<string, RecipientMapConfig> = {};
    for (const [name, m] of Object.entries(raw)) {
      maps[name] = this.recipientMap(['recipientMaps', name], name, obj(m), ledger);
    }
    return maps;
  }

  private recipientMap(at: PathSegment[], name: string, raw: Obj, ledger: LedgerConfig): RecipientMapConfig {
    const d = DEFAULTS.recipientMap;
    const kinds = (['file', 'redis', 'ldap'] as const).filter((k) => raw[k] !== undefined);
    if (kinds.length === 0) this.issues.add(at, 'EREQUIRED', 'needs file, redis or ldap');
    if (kinds.length > 1)
      this.issues.add(at, 'ECONFLICT', `set one of file, redis, ldap (got ${kinds.join(', ')})`);
    const map: RecipientMapConfig = {
      name,
      cacheTtl: this.duration([...at, 'cacheTtl'], raw.cacheTtl, d.cacheTtl),
      negativeCacheTtl: this.duration([...at, 'negativeCacheTtl'], raw.negativeCacheTtl, d.negativeCacheTtl),
      cacheSize: num(raw.cacheSize, d.cacheSize),
      recipientDelimiter: str(raw.recipientDelimiter) ?? d.recipientDelimiter,
      timeout: this.duration([...at, 'timeout'], raw.timeout, d.timeout, '1ms'),
    };
    if (raw.file !== undefined) map.file = this.file(raw.file);
    if (isPlainObject(raw.redis)) map.redis = this.redisMap([...at, 'redis'], raw.redis, ledger);
    if (isPlainObject(raw.ldap)) {
      const l = raw.ldap;
      const url = this.parsed([...at, 'ldap', 'url'], parseUrl(l.url, ['ldap:', 'ldaps:']), '');
      const startTls = l.startTls === true;
      if (startTls && url.startsWith('ldaps:')) {
        this.issues.add(
          [...at, 'ldap', 'startTls'],
          'ECONFLICT',
          'STARTTLS is for ldap:// URLs; ldaps:// is TLS already',
        );
      }
      if ((l.bindDn === undefined) !== (l.bindPassword === undefined)) {
        this.issues.add(
          [...at, 'ldap', l.bindDn === undefined ? 'bindDn' : 'bindPassword'],
          'EREQUIRED',
          'bindDn and bindPassword go together',
        );
      }
      const filter = str(l.filter) ?? d.ldapFilter;
      const bad = /%[^sud%]|%$/.exec(filter);
      if (bad)
        this.issues.add(
          [...at, 'ldap', 'filter'],
          'EVALUE',
          `unknown expansion "${bad[0]}" (use %s, %u, %d or %%)`,
        );
      map.ldap = {
        url,
        base: str(l.base) ?? '',
        filter,
        scope: (str(l.scope) ?? d.ldapScope) as LdapScope,
        ...optional('attribute', str(l.attribute)),
        ...optional('bindDn', str(l.bindDn)),
        ...optional('bindPassword', str(l.bindPassword)),
        ...optional('ca', l.ca === undefined ? undefined : this.file(l.ca)),
        startTls,
        verify: l.verify !== false,
        connections: num(l.connections, d.ldapConnections),
      };
    }
    return map;
  }

  private checkMapRef(at: PathSegment[], value: unknown, mapNames: string[]): void {
    if (typeof value === 'string' && !mapNames.includes(value)) {
      this.issues.add(
        at,
        'EREF',
        `unknown recipient map "${value}" (defined: ${mapNames.join(', ') || 'none'})`,
      );
    }
  }

  private scanners(raw: Obj): Record<string, ScannerConfig> {
    const d = DEFAULTS.scanner;
    const out: Record<string, ScannerConfig> = {};
    for (const [name, value] of Object.entries(raw)) {
      const at: PathSegment[] = ['scanners', name];
      const s = obj(value);
      const rspamd = isPlainObject(s.rspamd) ? s.rspamd : undefined;
      const milter = isPlainObject(s.milter) ? s.milter : undefined;
      if (rspamd && milter) this.issues.add(at, 'ECONFLICT', 'set either rspamd or milter, not both');
      if (!rspamd && !milter && isPlainObject(value))
        this.issues.add(at, 'EREQUIRED', 'needs rspamd or milter');
      out[name] = {
        name,
        ...optional(
          'rspamd',
          rspamd && {
            url: this.parsed([...at, 'rspamd', 'url'], parseUrl(rspamd.url, ['http:', 'https:']), ''),
          },
        ),
        ...optional(
          'milter',
          milter && { address: this.address([...at, 'milter', 'address'], milter.address, false) },
        ),
        timeout: this.duration([...at, 'timeout'], s.timeout, d.timeout, '1ms'),
        onError: (str(s.onError) ?? d.onError) as ScannerConfig['onError'],
        maxSize: this.size([...at, 'maxSize'], s.maxSize, d.maxSize),
      };
    }
    return out;
  }

  /** `scan: name` or `scan: [names]`, each one of `scanners`. */
  private listenerScan(at: PathSegment[], value: unknown, scannerNames: string[]): string[] {
    if (value === undefined) return [];
    const names = Array.isArray(value) ? value : [value];
    const out: string[] = [];
    names.forEach((n, i) => {
      const where = Array.isArray(value) ? [...at, i] : at;
      if (typeof n !== 'string') return;
      if (!scannerNames.includes(n)) {
        this.issues.add(
          where,
          'EREF',
          `unknown scanner "${n}" (defined: ${scannerNames.join(', ') || 'none'})`,
        );
      }
      if (!out.includes(n)) out.push(n);
    });
    return out;
  }

  private shaping(raw: Obj): ShapingConfig {
    const d = DEFAULTS.shaping;
    const limits = obj(raw.limits);
    const tarpit = obj(raw.tarpit);
    const greeting = obj(raw.greeting);
    const at: PathSegment[] = ['shaping'];
    return {
      allow: list(raw.allow).map((c, i) => this.parsed([...at, 'allow', i], parseCidr(c), '')),
      limits: {
        sessionsPerAddress: num(limits.sessionsPerAddress, d.limits.sessionsPerAddress),
        sessionsPerPrefix: num(limits.sessionsPerPrefix, d.limits.sessionsPerPrefix),
        connectionRate: this.rate(
          [...at, 'limits', 'connectionRate'],
          obj(limits.connectionRate),
          d.limits.connectionWindow,
        ),
        messageRate: this.rate(
          [...at, 'limits', 'messageRate'],
          obj(limits.messageRate),
          d.limits.messageWindow,
        ),
        action: (str(limits.action) ?? d.limits.action) as ShapingAction,
      },
      tarpit: {
        delay: this.duration([...at, 'tarpit', 'delay'], tarpit.delay, d.tarpit.delay),
        maxSessions: num(tarpit.maxSessions, d.tarpit.maxSessions),
        rejectedRecipients: num(tarpit.rejectedRecipients, d.tarpit.rejectedRecipients),
      },
      greeting: {
        delay: this.duration([...at, 'greeting', 'delay'], greeting.delay, d.greeting.delay),
        earlyTalker: (str(greeting.earlyTalker) ?? d.greeting.earlyTalker) as ShapingAction,
      },
      ...optional('dnsbl', isPlainObject(raw.dnsbl) ? this.dnsbl([...at, 'dnsbl'], raw.dnsbl) : undefined),
      ...optional(
        'policy',
        isPlainObject(raw.policy) ? this.policy([...at, 'policy'], raw.policy) : undefined,
      ),
    };
  }

  private rate(at: PathSegment[], raw: Obj, window: string): RateLimit {
    return {
      limit: num(raw.limit, DEFAULTS.shaping.limits.rateLimit),
      window: this.duration([...at, 'window'], raw.window, window, '1s'),
    };
  }

  private dnsbl(at: PathSegment[], raw: Obj): DnsblConfig {
    const d = DEFAULTS.shaping.dnsbl;
    return {
      zones: list(raw.zones).map((z, i) => {
        const zone = obj(z);
        return {
          zone: (str(zone.zone) ?? '').toLowerCase().replace(/\.$/, ''),
          weight: num(zone.weight, d.weight),
          codes: list(zone.codes).map((c, j) =>
            this.parsed([...at, 'zones', i, 'codes', j], parseDnsblCode(c), ''),
          ),
        };
      }),
      threshold: num(raw.threshold, d.threshold),
      action: (str(raw.action) ?? d.action) as ShapingAction,
      resolvers: list(raw.resolvers).map((r, i) => this.address([...at, 'resolvers', i], r, false)),
      timeout: this.duration([...at, 'timeout'], raw.timeout, d.timeout, '1ms'),
      negativeTtl: this.duration([...at, 'negativeTtl'], raw.negativeTtl, d.negativeTtl),
    };
  }

  private policy(at: PathSegment[], raw: Obj): PolicyConfig {
    const d = DEFAULTS.shaping.policy;
    const stages = raw.at === undefined ? [...d.at] : list(raw.at).map((s) => str(s) ?? '');
    return {
      address: this.address([...at, 'address'], raw.address, false),
      timeout: this.duration([...at, 'timeout'], raw.timeout, d.timeout, '1ms'),
      at: [...new Set(stages)] as PolicyConfig['at'],
      onError: (str(raw.onError) ?? d.onError) as PolicyConfig['onError'],
    };
  }

  private listener(
    at: PathSegment[],
    raw: Obj,
    poolNames: string[] | undefined,
    mapNames: string[],
    scannerNames: string[],
  ): ListenerConfig {
    const tls = isPlainObject(raw.tls) ? raw.tls : undefined;
    const proxy = isPlainObject(raw.proxyProtocol) ? raw.proxyProtocol : undefined;
    const role = (str(raw.role) ?? DEFAULTS.auth.role) as ListenerRole;
    const listen = this.address([...at, 'listen'], raw.listen, true);
    const auth = this.auth(at, raw, role, tls !== undefined, listen);
    const recipients = isPlainObject(raw.recipients) ? raw.recipients : undefined;
    if (recipients) this.checkMapRef([...at, 'recipients', 'map'], recipients.map, mapNames);
    return {
      name: str(raw.name) ?? '',
      role,
      ...optional('auth', auth),
      ...optional('clients', this.clients(at, raw.clients, role)),
      listen,
      hostname: str(raw.hostname) ?? this.host,
      pool: this.listenerPool([...at, 'pool'], raw.pool, poolNames),
      maxMessageSize: this.size(
        [...at, 'maxMessageSize'],
        raw.maxMessageSize,
        DEFAULTS.listener.maxMessageSize,
      ),
      maxRecipients: num(raw.maxRecipients, DEFAULTS.listener.maxRecipients),
      bareNewlines: (str(raw.bareNewlines) ??
        DEFAULTS.listener.bareNewlines) as ListenerConfig['bareNewlines'],
      nulBytes: (str(raw.nulBytes) ?? DEFAULTS.listener.nulBytes) as ListenerConfig['nulBytes'],
      longLines: (str(raw.longLines) ?? DEFAULTS.listener.longLines) as ListenerConfig['longLines'],
      dsn: raw.dsn === undefined ? DEFAULTS.listener.dsn : raw.dsn === true,
      ...optional(
        'proxyProtocol',
        proxy && {
          trusted: list(proxy.trusted).map((c, i) =>
            this.parsed([...at, 'proxyProtocol', 'trusted', i], parseCidr(c), ''),
          ),
          timeout: this.duration(
            [...at, 'proxyProtocol', 'timeout'],
            proxy.timeout,
            DEFAULTS.proxyProtocol.timeout,
            '1ms',
          ),
        },
      ),
      ...optional(
        'tls',
        tls && {
          cert: this.file(tls.cert),
          key: this.file(tls.key),
          implicit: tls.implicit === true,
        },
      ),
      timeouts: {
        idle: this.duration(
          [...at, 'timeouts', 'idle'],
          obj(raw.timeouts).idle,
          DEFAULTS.listener.idleTimeout,
          '1s',
        ),
        command: this.duration(
          [...at, 'timeouts', 'command'],
          obj(raw.timeouts).command,
          DEFAULTS.listener.commandTimeout,
          '100ms',
        ),
        minDataRate: num(obj(raw.timeouts).minDataRate, DEFAULTS.listener.minDataRate),
      },
      maxSessions: num(raw.maxSessions, DEFAULTS.listener.maxSessions),
      ...optional(
        'recipients',
        recipients && {
          map: str(recipients.map) ?? '',
          unknown: (str(recipients.unknown) ?? DEFAULTS.recipients.unknown) as 'reject' | 'pass',
        },
      ),
      scan: this.listenerScan([...at, 'scan'], raw.scan, scannerNames),
    };
  }

  /** One pool needs no naming; with several, each listener says which one takes unrouted mail. */
  private listenerPool(at: PathSegment[], value: unknown, poolNames: string[] | undefined): string {
    if (value === undefined) {
      if (poolNames?.length === 1) return poolNames[0]!;
      if (poolNames) this.issues.add(at, 'EREQUIRED', 'required when there is more than one pool');
      return '';
    }
    this.checkPoolRef(at, value, poolNames);
    return str(value) ?? '';
  }

  private checkPoolRef(at: PathSegment[], value: unknown, poolNames: string[] | undefined): void {
    if (typeof value === 'string' && poolNames && !poolNames.includes(value)) {
      this.issues.add(at, 'EREF', `unknown pool "${value}" (defined: ${poolNames.join(', ') || 'none'})`);
    }
  }

  private checkListenerConflicts(listeners: ListenerConfig[]): void {
    listeners.forEach((l, i) => {
      const before = listeners.slice(0, i);
      const sameName = before.findIndex((o) => o.name === l.name && l.name !== '');
      if (sameName >= 0) {
        this.issues.add(
          ['listeners', i, 'name'],
          'ECONFLICT',
          `duplicate listener name (also listeners[${sameName}])`,
        );
      }
      const samePort = before.findIndex((o) => clash(o.listen, l.listen));
      if (samePort >= 0) {
        this.issues.add(
          ['listeners', i, 'listen'],
          'ECONFLICT',
          `port ${l.listen.port} is already taken by listeners[${samePort}]`,
        );
      }
    });
  }

  private checkAdminConflict(admin: HostPort, listeners: ListenerConfig[]): void {
    const i = listeners.findIndex((l) => clash(l.listen, admin));
    if (i >= 0) {
      this.issues.add(
        ['admin', 'listen'],
        'ECONFLICT',
        `port ${admin.port} is already taken by listeners[${i}]`,
      );
    }
  }

  private pool(
    at: PathSegment[],
    name: string,
    raw: Obj,
    balancing: BalancingConfig,
    consulDatacenter: string | undefined,
  ): PoolConfig {
    const hasStatic = raw.static !== undefined;
    const hasConsul = raw.consul !== undefined;
    const kinds = POOL_KINDS.filter((k) => raw[k] !== undefined);
    if (kinds.length > 1) this.issues.add(at, 'ECONFLICT', `set one of ${kinds.join(', ')}, not several`);
    if (kinds.length === 0) this.issues.add(at, 'EREQUIRED', `needs one of ${POOL_KINDS.join(', ')}`);
    const destination = raw.mx !== undefined || raw.originalDestination !== undefined;
    const consul = obj(raw.consul);
    return {
      name,
      ...optional(
        'static',
        hasStatic ? this.staticBackends([...at, 'static'], raw.static, balancing) : undefined,
      ),
      ...optional(
        'consul',
        hasConsul
          ? {
              service: str(consul.service) ?? '',
              ...optional('tag', str(consul.tag)),
              ...optional('datacenter', str(consul.datacenter) ?? consulDatacenter),
            }
          : undefined,
      ),
      ...optional('mx', raw.mx === undefined ? undefined : this.mx([...at, 'mx'], obj(raw.mx), balancing)),
      ...optional(
        'originalDestination',
        raw.originalDestination === undefined
          ? undefined
          : this.destinationLimits([...at, 'originalDestination'], obj(raw.originalDestination), balancing),
      ),
      // The destinations are other people's MTAs: they get no XCLIENT unless the operator says so.
      xclient: (str(raw.xclient) ?? (destination ? 'off' : DEFAULTS.pool.xclient)) as PoolConfig['xclient'],
      proxyProtocol: (str(raw.proxyProtocol) ?? DEFAULTS.pool.proxyProtocol) as PoolConfig['proxyProtocol'],
      tls: this.poolTls(raw.tls),
      timeouts: this.backendTimeouts([...at, 'timeouts'], obj(raw.timeouts)),
      connectRetries: num(raw.connectRetries, DEFAULTS.pool.connectRetries),
      ...optional('heloName', str(raw.heloName)),
      ...optional(
        'outlierDetection',
        raw.outlierDetection === undefined
          ? undefined
          : this.outlierDetection([...at, 'outlierDetection'], obj(raw.outlierDetection), destination),
      ),
    };
  }

  /** Only for pools of our own backends: the destinations of mx/originalDestination are strangers. */
  private outlierDetection(at: PathSegment[], raw: Obj, destination: boolean): OutlierDetectionConfig {
    if (destination) this.issues.add(at, 'EVALUE', 'only static and consul pools have outlierDetection');
    const d = DEFAULTS.outlierDetection;
    const base = this.duration([...at, 'baseEjectionTime'], raw.baseEjectionTime, d.baseEjectionTime, '1ms');
    const max = this.duration([...at, 'maxEjectionTime'], raw.maxEjectionTime, d.maxEjectionTime, '1ms');
    if (max < base)
      this.issues.add([...at, 'maxEjectionTime'], 'EVALUE', 'must be at least baseEjectionTime');
    return {
      window: this.duration([...at, 'window'], raw.window, d.window, '1s'),
      minimumVolume: num(raw.minimumVolume, d.minimumVolume),
      deferralPercent: num(raw.deferralPercent, d.deferralPercent),
      consecutiveFailures: num(raw.consecutiveFailures, d.consecutiveFailures),
      baseEjectionTime: base,
      maxEjectionTime: max,
      maxEjectedPercent: num(raw.maxEjectedPercent, d.maxEjectedPercent),
    };
  }

  /** An outbound listener without `clients` would relay for anyone: an open relay. */
  private clients(at: PathSegment[], raw: unknown, role: ListenerRole): string[] | undefined {
    if (raw === undefined) {
      if (role === 'outbound')
        this.issues.add([...at, 'clients'], 'EREQUIRED', 'required on an outbound listener (no open relay)');
      return undefined;
    }
    if (role !== 'outbound')
      this.issues.add([...at, 'clients'], 'EVALUE', 'only outbound listeners have clients');
    return list(raw).map((c, i) => this.parsed([...at, 'clients', i], parseCidr(c), ''));
  }

  /** The operator's own networks (outbound listeners' `clients`) join a default deny list. */
  private denyOperatorNetworks(
    raw: Obj,
    pools: Record<string, PoolConfig>,
    listeners: ListenerConfig[],
  ): void {
    const own = [...new Set(listeners.flatMap((l) => l.clients ?? []))];
    for (const [name, pool] of Object.entries(pools)) {
      const limits = pool.mx ?? pool.originalDestination;
      const kind = pool.mx ? 'mx' : 'originalDestination';
      if (limits && obj(obj(raw[name])[kind]).denyDestinations === undefined)
        limits.denyDestinations.push(...own);
    }
  }

  private mx(at: PathSegment[], raw: Obj, balancing: BalancingConfig): MxPoolSource {
    const d = DEFAULTS.mx;
    return {
      port: num(raw.port, d.port),
      resolvers: list(raw.resolvers).map((r, i) => this.address([...at, 'resolvers', i], r, false)),
      timeout: this.duration([...at, 'timeout'], raw.timeout, d.timeout, '1ms'),
      maxHosts: num(raw.maxHosts, d.maxHosts),
      maxTtl: this.duration([...at, 'maxTtl'], raw.maxTtl, d.maxTtl),
      ...this.destinationLimits(at, raw, balancing),
    };
  }

  private destinationLimits(at: PathSegment[], raw: Obj, balancing: BalancingConfig): DestinationLimits {
    return {
      denyDestinations:
        raw.denyDestinations === undefined
          ? [...DEFAULT_DENY_DESTINATIONS]
          : list(raw.denyDestinations).map((c, i) =>
              this.parsed([...at, 'denyDestinations', i], parseCidr(c), ''),
            ),
      maxConnections: num(raw.maxConnections, balancing.defaultMaxConnections),
      hosts: list(raw.hosts).map((h) => ({
        host: (str(obj(h).host) ?? '').toLowerCase().replace(/\.$/, ''),
        maxConnections: num(obj(h).maxConnections, balancing.defaultMaxConnections),
      })),
    };
  }

  private staticBackends(at: PathSegment[], raw: unknown, balancing: BalancingConfig): StaticBackend[] {
    const backends = list(raw).map((item, i): StaticBackend => {
      const b = obj(item);
      return {
        address: this.address([...at, i, 'address'], b.address, false),
        weight: num(b.weight, DEFAULTS.backend.weight),
        maxConnections: num(b.maxConnections, balancing.defaultMaxConnections),
        ...optional('xclient', str(b.xclient) as StaticBackend['xclient']),
        ...optional('proxyProtocol', str(b.proxyProtocol) as StaticBackend['proxyProtocol']),
        ...optional('tls', str(b.tls) as TlsMode | undefined),
      };
    });
    backends.forEach((b, i) => {
      const first = backends.findIndex(
        (o) => o.address.host === b.address.host && o.address.port === b.address.port,
      );
      if (first < i && b.address.host !== '') {
        this.issues.add([...at, i, 'address'], 'ECONFLICT', `duplicate backend (also static[${first}])`);
      }
    });
    return backends;
  }

  private poolTls(raw: unknown): BackendTlsSettings {
    if (!isPlainObject(raw)) {
      return { mode: (str(raw) ?? DEFAULTS.pool.tlsMode) as TlsMode, verify: DEFAULTS.pool.tlsVerify };
    }
    return {
      mode: (str(raw.mode) ?? DEFAULTS.pool.tlsMode) as TlsMode,
      verify: typeof raw.verify === 'boolean' ? raw.verify : DEFAULTS.pool.tlsVerify,
      ...optional('ca', raw.ca === undefined ? undefined : this.file(raw.ca)),
      ...optional('servername', str(raw.servername)),
    };
  }

  private backendTimeouts(at: PathSegment[], raw: Obj): BackendTimeouts {
    const t = DEFAULTS.pool.timeouts;
    return {
      connect: this.duration([...at, 'connect'], raw.connect, t.connect, '1ms'),
      greeting: this.duration([...at, 'greeting'], raw.greeting, t.greeting, '1ms'),
      command: this.duration([...at, 'command'], raw.command, t.command, '1ms'),
      dataStart: this.duration([...at, 'dataStart'], raw.dataStart, t.dataStart, '1ms'),
      dataDone: this.duration([...at, 'dataDone'], raw.dataDone, t.dataDone, '1ms'),
    };
  }

  private route(
    at: PathSegment[],
    raw: Obj,
    poolNames: string[] | undefined,
    listeners: ListenerConfig[] | undefined,
    maps: Record<string, RecipientMapConfig>,
  ): RouteConfig {
    this.checkPoolRef([...at, 'pool'], raw.pool, poolNames);
    const mapName = str(raw.recipientMap);
    if (raw.recipientMap !== undefined)
      this.checkMapRef([...at, 'recipientMap'], raw.recipientMap, Object.keys(maps));
    if (raw.pool === undefined) {
      const map = mapName === undefined ? undefined : maps[mapName];
      if (mapName === undefined) this.issues.add([...at, 'pool'], 'EREQUIRED', 'required (or recipientMap)');
      else if (map?.ldap && map.ldap.attribute === undefined) {
        this.issues.add(
          [...at, 'pool'],
          'EREQUIRED',
          `required: recipient map "${mapName}" names no pool (set its ldap.attribute, or pool here)`,
        );
      }
    }
    const listener = str(raw.listener);
    if (listener !== undefined && listeners && !listeners.some((l) => l.name === listener)) {
      const names = [...new Set(listeners.map((l) => l.name))].join(', ');
      this.issues.add([...at, 'listener'], 'EREF', `unknown listener "${listener}" (defined: ${names})`);
    }
    if (
      raw.recipientDomain === undefined &&
      raw.recipientMap === undefined &&
      raw.senderDomain === undefined &&
      raw.listener === undefined
    ) {
      this.issues.add(at, 'EREQUIRED', 'needs recipientDomain, recipientMap, senderDomain or listener');
    }
    return {
      ...optional('recipientDomain', str(raw.recipientDomain)?.toLowerCase()),
      ...optional('recipientMap', mapName),
      ...optional('senderDomain', str(raw.senderDomain)?.toLowerCase()),
      ...optional('listener', listener),
      pool: str(raw.pool) ?? '',
    };
  }

  private balancing(raw: Obj): BalancingConfig {
    return {
      policy: (str(raw.policy) ?? DEFAULTS.balancing.policy) as BalancingConfig['policy'],
      defaultMaxConnections: num(raw.defaultMaxConnections, DEFAULTS.balancing.defaultMaxConnections),
    };
  }

  /**
   * A redis map's connection: its own `url`, `cluster` or `sentinel` (one of them) with its own
   * `tls`, or else the ledger's Redis with the ledger's TLS (the map's `tls` replacing it if given).
   */
  private redisMap(at: PathSegment[], r: Obj, ledger: LedgerConfig): RedisMapConfig {
    const modes = (['url', 'cluster', 'sentinel'] as const).filter((m) => r[m] !== undefined);
    if (modes.length > 1) {
      this.issues.add(
        [...at, modes[1]!],
        'EVALUE',
        `give one of url, cluster, sentinel, not ${modes.join(' and ')}`,
      );
    }
    const own = this.redisTls([...at, 'tls'], r.tls);
    const where =
      modes.length > 0
        ? {
            ...optional(
              'url',
              r.url === undefined
                ? undefined
                : this.parsed([...at, 'url'], parseUrl(r.url, ['redis:', 'rediss:']), ''),
            ),
            ...optional('cluster', this.redisUrls([...at, 'cluster'], r.cluster)),
            ...optional('sentinel', this.redisSentinel([...at, 'sentinel'], r.sentinel)),
            ...optional('tls', own),
          }
        : {
            ...optional('url', ledger.redis),
            ...optional('cluster', ledger.redisCluster),
            ...optional('sentinel', ledger.redisSentinel),
            ...optional('tls', own ?? ledger.tls),
          };
    if (where.url === undefined && where.cluster === undefined && where.sentinel === undefined) {
      this.issues.add(
        [...at, 'url'],
        'EREQUIRED',
        'required when the ledger has no Redis (redis, redisCluster or redisSentinel)',
      );
    }
    return {
      ...where,
      prefix: str(r.prefix) ?? DEFAULTS.recipientMap.redisPrefix,
      ...optional('hash', str(r.hash)),
    };
  }

  private redisUrls(at: PathSegment[], raw: unknown): string[] | undefined {
    return Array.isArray(raw)
      ? raw.map((u, i) => this.parsed([...at, i], parseUrl(u, ['redis:', 'rediss:']), ''))
      : undefined;
  }

  private redisSentinel(at: PathSegment[], raw: unknown): RedisSentinelConfig | undefined {
    if (!isPlainObject(raw)) return undefined;
    return {
      sentinels: list(raw.sentinels).map((a, i) => this.address([...at, 'sentinels', i], a, false)),
      masterName: str(raw.masterName) ?? '',
      ...optional('username', str(raw.username)),
      ...optional('password', str(raw.password)),
      ...optional('sentinelUsername', str(raw.sentinelUsername)),
      ...optional('sentinelPassword', str(raw.sentinelPassword)),
      db: num(raw.db, 0),
    };
  }

  private redisTls(at: PathSegment[], raw: unknown): RedisTlsConfig | undefined {
    if (!isPlainObject(raw)) return undefined;
    if ((raw.cert === undefined) !== (raw.key === undefined)) {
      this.issues.add(
        [...at, raw.cert === undefined ? 'cert' : 'key'],
        'EVALUE',
        'give cert and key together',
      );
    }
    return {
      ...optional('ca', raw.ca === undefined ? undefined : this.file(raw.ca)),
      ...optional('cert', raw.cert === undefined ? undefined : this.file(raw.cert)),
      ...optional('key', raw.key === undefined ? undefined : this.file(raw.key)),
      ...optional('servername', str(raw.servername)),
    };
  }

  private ledger(raw: Obj): LedgerConfig {
    const keyPrefix = str(raw.keyPrefix) ?? DEFAULTS.ledger.keyPrefix;
    // Each script's keys share one hash tag of our own; a brace in the prefix would change the slot.
    if (/[{}]/.test(keyPrefix)) {
      this.issues.add(['ledger', 'keyPrefix'], 'EVALUE', 'must not contain "{" or "}"');
    }
    const modes = (['redis', 'redisCluster', 'redisSentinel'] as const).filter((m) => raw[m] !== undefined);
    if (modes.length > 1) {
      this.issues.add(
        ['ledger', modes[1]!],
        'EVALUE',
        `give one of redis, redisCluster, redisSentinel, not ${modes.join(' and ')}`,
      );
    }
    const tls = isPlainObject(raw.tls) ? raw.tls : undefined;
    if (tls && modes.length === 0) {
      this.issues.add(['ledger', 'tls'], 'EVALUE', 'needs redis, redisCluster or redisSentinel');
    }
    return {
      ...optional(
        'redis',
        raw.redis === undefined
          ? undefined
          : this.parsed(['ledger', 'redis'], parseUrl(raw.redis, ['redis:', 'rediss:']), ''),
      ),
      ...optional('redisCluster', this.redisUrls(['ledger', 'redisCluster'], raw.redisCluster)),
      ...optional('redisSentinel', this.redisSentinel(['ledger', 'redisSentinel'], raw.redisSentinel)),
      ...optional('tls', this.redisTls(['ledger', 'tls'], raw.tls)),
      leaseTtl: this.duration(['ledger', 'leaseTtl'], raw.leaseTtl, DEFAULTS.ledger.leaseTtl, MIN_LEASE_TTL),
      onRedisDown: (str(raw.onRedisDown) ?? DEFAULTS.ledger.onRedisDown) as LedgerConfig['onRedisDown'],
      keyPrefix,
    };
  }

  private consul(raw: Obj): ConsulConfig {
    const address = raw.address ?? DEFAULTS.consul.address;
    return {
      address: this.parsed(['consul', 'address'], parseUrl(address, ['http:', 'https:']), ''),
      ...optional('token', str(raw.token)),
      ...optional('datacenter', str(raw.datacenter)),
      ...optional('ca', raw.ca === undefined ? undefined : this.file(raw.ca)),
    };
  }

  /** `min`, in the file's syntax, for values where 0 or a short time breaks the feature. */
  private duration(at: PathSegment[], value: unknown, dflt: string, min?: string): number {
    const ms = this.parsed(at, parseDuration(value ?? dflt), 0);
    const floor = min === undefined ? undefined : parseDuration(min);
    if (floor?.ok && ms < floor.value) this.issues.add(at, 'EVALUE', `must be at least ${min}`);
    return ms;
  }

  private size(at: PathSegment[], value: unknown, dflt: string): number {
    const bytes = this.parsed(at, parseSize(value ?? dflt), 0);
    if (bytes < 1) this.issues.add(at, 'EVALUE', 'must be larger than 0');
    return bytes;
  }

  private address(at: PathSegment[], value: unknown, allowPortZero: boolean): HostPort {
    return this.parsed(at, parseHostPort(value, allowPortZero), { host: '', port: 0 });
  }

  private parsed<T>(at: PathSegment[], result: Parsed<T>, fallback: T): T {
    if (result.ok) return result.value;
    this.issues.add(at, 'EVALUE', result.message);
    return fallback;
  }

  private file(value: unknown): string {
    const path = str(value) ?? '';
    const source = this.options.source;
    return source && path !== '' && !isAbsolute(path) ? resolvePath(dirname(source), path) : path;
  }
}

function num(value: unknown, dflt: number): number {
  return typeof value === 'number' ? value : dflt;
}

/** Two listens collide on one port when their hosts match or either is a wildcard. */
function clash(a: HostPort, b: HostPort): boolean {
  if (a.port === 0 || b.port === 0 || a.port !== b.port || a.host === '' || b.host === '') return false;
  return a.host === b.host || WILDCARDS.has(a.host) || WILDCARDS.has(b.host);
}
