// The shape of the YAML file as TypeBox schemas: one source for the TypeScript type of the raw
// file (`RawConfig`), the JSON Schema the Helm chart validates values with, the error messages of
// check-config and the reference table of the README. Unknown keys are errors everywhere.
import {
  type Static,
  type TObject,
  type TOptional,
  type TProperties,
  type TSchema,
  Type,
} from '@sinclair/typebox';
import { DEFAULTS } from './defaults.js';
import {
  DOMAIN_MAX_LENGTH,
  DOMAIN_PATTERN,
  DURATION_HINT,
  DURATION_PATTERN,
  HOST_PORT_HINT,
  HOST_PORT_PATTERN,
  ROUTE_DOMAIN_PATTERN,
  SIZE_HINT,
  SIZE_PATTERN,
} from './units.js';

/**
 * Annotations of ours on top of JSON Schema: `syntax` names the value syntax in the README,
 * `defaultText` describes a default computed at load time, `errorMessage` replaces the generic
 * message for any error at that value. json-schema.ts strips them from the emitted JSON Schema.
 */
export const CUSTOM_KEYWORDS = ['syntax', 'defaultText', 'errorMessage'] as const;

/** Listener and pool names: they appear in metric labels and in routes. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]*$';
export const NAME_HINT = 'expected a name of letters, digits, "-" and "_"';

const closed = { additionalProperties: false } as const;

type ClosedProperties<T extends TProperties, K extends keyof T> = {
  [P in keyof T]: P extends K ? T[P] : TOptional<T[P]>;
};

/** An object that allows no other keys; every key not named in `required` is optional. */
function Closed<T extends TProperties, K extends keyof T & string = never>(
  properties: T,
  required: readonly K[],
  options: Record<string, unknown> = {},
): TObject<ClosedProperties<T, K>> {
  const props: TProperties = {};
  for (const [key, schema] of Object.entries(properties)) {
    props[key] = (required as readonly string[]).includes(key) ? schema : Type.Optional(schema);
  }
  return Type.Object(props, { ...options, ...closed }) as TObject<ClosedProperties<T, K>>;
}

function withDefault(description: string, dflt: unknown): Record<string, unknown> {
  return {
    ...(description === '' ? {} : { description }),
    ...(dflt === undefined ? {} : { default: dflt }),
  };
}

function Duration(description: string, dflt?: string) {
  return Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Integer({ minimum: 0 })], {
    ...withDefault(description, dflt),
    syntax: 'duration',
    errorMessage: DURATION_HINT,
  });
}

function Size(description: string, dflt?: string) {
  return Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 0 })], {
    ...withDefault(description, dflt),
    syntax: 'size',
    errorMessage: SIZE_HINT,
  });
}

function Address(description: string, dflt?: string) {
  return Type.String({
    pattern: HOST_PORT_PATTERN,
    ...withDefault(description, dflt),
    syntax: 'host:port',
    errorMessage: HOST_PORT_HINT,
  });
}

function Domain(description: string, extra: Record<string, unknown> = {}) {
  return Type.String({
    pattern: DOMAIN_PATTERN,
    maxLength: DOMAIN_MAX_LENGTH,
    description,
    syntax: 'domain',
    errorMessage: 'expected a host name like mx.example.com',
    ...extra,
  });
}

function Name(description: string, extra: Record<string, unknown> = {}) {
  return Type.String({
    pattern: NAME_PATTERN,
    description,
    syntax: 'name',
    errorMessage: NAME_HINT,
    ...extra,
  });
}

function OneOf<const T extends string>(values: readonly T[], description: string, dflt?: T) {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    withDefault(description, dflt),
  );
}

function Text(description: string, extra: Record<string, unknown> = {}) {
  return Type.String({ minLength: 1, description, ...extra });
}

const TLS_MODES = ['none', 'opportunistic', 'required'] as const;
const SHAPING_ACTIONS = ['reject', 'tarpit'] as const;
const XCLIENT_MODES = ['auto', 'off'] as const;
const PROXY_VERSIONS = ['off', 'v1', 'v2'] as const;

const AU = DEFAULTS.auth;

/** SASL AUTH on a submission or outbound listener (issue 13). */
export const ListenerAuthSchema = Closed(
  {
    required: Type.Boolean({
      description: 'MAIL needs a successful AUTH first (530 5.7.0).',
      defaultText: 'true on `submission`, false on `outbound`',
    }),
    verify: OneOf(
      ['backend', 'file', 'http'],
      "Who checks the credentials: a backend MTA of the listener's pool (SASL), an htpasswd file, or an HTTP service.",
    ),
    file: Text(
      'htpasswd file with bcrypt lines (`htpasswd -B`), for `verify: file`; re-read on change and SIGHUP.',
      {
        syntax: 'path',
      },
    ),
    http: Closed(
      {
        url: Type.String({
          description:
            'Auth service in the spirit of nginx `auth_http`, for `verify: http` (see the proxy README).',
          syntax: 'URL',
        }),
        timeout: Duration('No answer within this: 454 4.7.0.', AU.httpTimeout),
      },
      ['url'],
    ),
    timeout: Duration(
      '`verify: backend`: the whole SASL exchange with the backend, else 454 4.7.0.',
      AU.backendTimeout,
    ),
    allowPlaintext: Type.Boolean(
      withDefault(
        'Offer AUTH without TLS (only on a loopback listen address, for tests); otherwise 538 5.7.11.',
        AU.allowPlaintext,
      ),
    ),
    cacheTtl: Duration(
      'Successful verifications are remembered this long (keyed by a hash, never the password); 0 is off.',
      AU.cacheTtl,
    ),
    failures: Closed(
      {
        perClient: Count(
          'Failed AUTH per client address and window, cluster-wide; then 421 4.7.0 (or the tarpit); 0 is off.',
          AU.failures.perClient,
        ),
        perUser: Count('Failed AUTH per user name and window, cluster-wide; 0 is off.', AU.failures.perUser),
        window: Duration('Length of the sliding window (at least 1s).', AU.failures.window),
        action: OneOf(
          SHAPING_ACTIONS,
          'Over a limit: 421 4.7.0 and close, or the tarpit.',
          AU.failures.action,
        ),
      },
      [],
    ),
  },
  ['verify'],
);

export const ListenerSchema = Closed(
  {
    name: Name('Listener name, used in metrics, logs and routes.'),
    role: OneOf(
      ['inbound', 'submission', 'outbound'],
      'inbound: MX side, no AUTH; submission: AUTH required (587, 465); outbound: intercepted port 25, AUTH optional.',
      AU.role,
    ),
    auth: ListenerAuthSchema,
    clients: Type.Array(Cidr(''), {
      minItems: 1,
      description:
        'Outbound listeners (required there, nowhere else): the networks whose hosts may send through it; any other client gets 554 5.7.1.',
    }),
    listen: Address('Address and port to accept SMTP on; port 0 takes a free port.'),
    hostname: Domain('Name in the greeting and the EHLO reply.', { defaultText: 'the machine host name' }),
    pool: Name('Pool for recipients no route matches.', { defaultText: 'the only pool, when there is one' }),
    maxMessageSize: Size(
      'Largest message accepted (SIZE); larger ones get 552 5.3.4.',
      DEFAULTS.listener.maxMessageSize,
    ),
    maxRecipients: Type.Integer({
      minimum: 100,
      ...withDefault('Recipients per transaction; more get 452 4.5.3.', DEFAULTS.listener.maxRecipients),
      errorMessage: 'expected a whole number of at least 100 (RFC 5321 4.5.3.1.8)',
    }),
    bareNewlines: OneOf(
      ['normalize', 'reject'],
      'Bare CR or LF in DATA: rewrite to CRLF, or reject the message.',
      DEFAULTS.listener.bareNewlines,
    ),
    nulBytes: OneOf(
      ['reject', 'strip'],
      'NUL in DATA: reject the message (550 5.6.0), or remove it before dots are stuffed.',
      DEFAULTS.listener.nulBytes,
    ),
    longLines: OneOf(
      ['reject', 'pass'],
      'A DATA line over 998 octets: reject the message (550 5.6.0), or pass it (only if no backend cuts long lines).',
      DEFAULTS.listener.longLines,
    ),
    dsn: Type.Boolean(
      withDefault(
        'Offer DSN: its parameters go to a backend with DSN; without, NOTIFY=NEVER/SUCCESS get 555 5.5.4 at RCPT. false: not offered, refused (555 5.5.4); the client does DSN itself.',
        DEFAULTS.listener.dsn,
      ),
    ),
    proxyProtocol: Closed(
      {
        trusted: Type.Array(
          Type.String({ syntax: 'CIDR', errorMessage: 'expected an address or CIDR like 10.0.0.0/8' }),
          {
            minItems: 1,
            description:
              'Peers (CIDRs or addresses) whose connections must start with a PROXY v1/v2 header; others may not send one.',
          },
        ),
        timeout: Duration(
          'A trusted peer must send its whole PROXY header within this, or is disconnected.',
          DEFAULTS.proxyProtocol.timeout,
        ),
      },
      ['trusted'],
    ),
    tls: Closed(
      {
        cert: Text('PEM certificate chain file; enables STARTTLS.', { syntax: 'path' }),
        key: Text('PEM private key file.', { syntax: 'path' }),
        implicit: Type.Boolean(
          withDefault(
            'TLS from the first byte (port 465) instead of STARTTLS.',
            DEFAULTS.listener.tlsImplicit,
          ),
        ),
      },
      ['cert', 'key'],
    ),
    timeouts: Closed(
      {
        idle: Duration(
          'A client silent this long is disconnected (at least 1s).',
          DEFAULTS.listener.idleTimeout,
        ),
        command: Duration(
          'A command line must be complete this long after its first byte (421 4.4.2), a STARTTLS handshake after the 220; also the most DATA has in hand.',
          DEFAULTS.listener.commandTimeout,
        ),
        minDataRate: Type.Integer({
          minimum: 0,
          ...withDefault(
            'Bytes/s in DATA: each chunk earns size/rate more time, up to `command`; out of time: 451 4.4.2 (0: off).',
            DEFAULTS.listener.minDataRate,
          ),
        }),
      },
      [],
    ),
    maxSessions: Type.Integer({
      minimum: 1,
      ...withDefault('Concurrent sessions on this listener, per node.', DEFAULTS.listener.maxSessions),
    }),
    recipients: Closed(
      {
        map: Name(
          'Recipient map (in `recipientMaps`) every RCPT is looked up in before any backend is bound.',
        ),
        unknown: OneOf(
          ['reject', 'pass'],
          'A recipient the map does not know: 550 5.1.1 at once, or passed to the backend (counted only). A map that fails answers 451 4.3.0 either way.',
          DEFAULTS.recipients.unknown,
        ),
      },
      ['map'],
    ),
    scan: Type.Union([Name(''), Type.Array(Name(''), { minItems: 1 })], {
      description:
        'Content scanner(s) from `scanners` every message waits for before our final dot; several run in parallel and the strictest verdict wins.',
      syntax: 'name or list',
    }),
  },
  ['name', 'listen'],
);

const SC = DEFAULTS.scanner;

export const ScannerSchema = Closed(
  {
    rspamd: Closed(
      {
        url: Type.String({
          description: "rspamd's normal worker (`POST /checkv2`), e.g. http://127.0.0.1:11333.",
          syntax: 'URL',
        }),
      },
      ['url'],
    ),
    milter: Closed({ address: Address("A milter, e.g. rspamd's proxy worker at 127.0.0.1:11332.") }, [
      'address',
    ]),
    timeout: Duration(
      "The verdict must come this long after the client's final dot (each content chunk too), else `onError`.",
      SC.timeout,
    ),
    onError: OneOf(
      ['accept', 'defer', 'reject'],
      'Scanner down, hanging or answering garbage: pass unscanned, 451 4.3.5, or 554 5.7.1.',
      SC.onError,
    ),
    maxSize: Size('Larger messages pass unscanned (counted as `oversize`).', SC.maxSize),
  },
  [],
);

export const StaticBackendSchema = Closed(
  {
    address: Address('Backend MTA address.'),
    weight: Type.Number({
      exclusiveMinimum: 0,
      ...withDefault('Relative share of sessions.', DEFAULTS.backend.weight),
    }),
    maxConnections: Type.Integer({
      minimum: 1,
      description: 'Connections all nodes together may hold to it.',
      defaultText: '`balancing.defaultMaxConnections`',
    }),
    xclient: OneOf(XCLIENT_MODES, "Overrides the pool's `xclient`."),
    proxyProtocol: OneOf(PROXY_VERSIONS, "Overrides the pool's `proxyProtocol`."),
    tls: OneOf(TLS_MODES, "Overrides the pool's TLS mode."),
  },
  ['address'],
);

export const PoolTlsSchema = Closed(
  {
    mode: OneOf(TLS_MODES, 'STARTTLS to the backend: never, when offered, or always.', DEFAULTS.pool.tlsMode),
    verify: Type.Boolean(
      withDefault("Check the backend's certificate chain and name.", DEFAULTS.pool.tlsVerify),
    ),
    ca: Text('PEM file of extra CAs to trust.', { syntax: 'path' }),
    servername: Domain('Name for SNI and the certificate check.', { defaultText: 'the backend host' }),
  },
  [],
);

// Pool kinds whose backend is the message's own destination (outbound placement, issue 14): the
// recipient domain's MX hosts, or the original destination an interceptor handed over.
function DestinationOptions() {
  return {
    denyDestinations: Type.Array(Cidr(''), {
      description:
        "Destination networks never connected to (no SSRF through the node); the node's own listeners are refused whatever this says.",
      defaultText:
        'loopback, link-local, unspecified and multicast networks, and the `clients` of outbound listeners',
    }),
    maxConnections: Type.Integer({
      minimum: 1,
      description: 'Connections all nodes together may hold to one destination host not listed in `hosts`.',
      defaultText: '`balancing.defaultMaxConnections`',
    }),
    hosts: Type.Array(
      Closed(
        {
          host: Text('A destination host: an IP address, or an MX host name.'),
          maxConnections: Type.Integer({ minimum: 1, description: 'Its cap, all nodes together.' }),
        },
        ['host', 'maxConnections'],
      ),
      { description: 'Caps of particular destination hosts.', default: [] },
    ),
  };
}

export const MxPoolSchema = Closed(
  {
    port: Type.Integer({
      minimum: 1,
      maximum: 65535,
      ...withDefault('Port of the MX hosts (another than 25 only for test set-ups).', DEFAULTS.mx.port),
    }),
    resolvers: Type.Array(Address('DNS server.'), {
      description: "DNS servers (host:port), asked in order; empty: the system's.",
      default: [],
    }),
    timeout: Duration('Wait for one DNS answer from one server.', DEFAULTS.mx.timeout),
    maxHosts: Type.Integer({
      minimum: 1,
      maximum: 50,
      ...withDefault(
        'Addresses of MX hosts tried per domain, by preference, before 451 4.4.1.',
        DEFAULTS.mx.maxHosts,
      ),
    }),
    maxTtl: Duration('DNS answers are cached for their TTL, at most this long.', DEFAULTS.mx.maxTtl),
    ...DestinationOptions(),
  },
  [],
  {
    description:
      "The recipient domain's MX hosts by preference (A/AAAA when it has none); one recipient domain per transaction.",
  },
);

export const OriginalDestinationPoolSchema = Closed(DestinationOptions(), [], {
  description:
    'The destination address of the trusted PROXY v2 header (what the intercepted client dialled).',
});

const OD = DEFAULTS.outlierDetection;

export const OutlierDetectionSchema = Closed(
  {
    window: Duration(
      "Sliding window of each backend's transactions and deferrals, judged whole and by its newest third (at least 1s).",
      OD.window,
    ),
    minimumVolume: Type.Integer({
      minimum: 1,
      ...withDefault(
        'Transactions a backend must have had in the window, and another backend too, before its share is judged.',
        OD.minimumVolume,
      ),
    }),
    deferralPercent: Type.Integer({
      minimum: 1,
      maximum: 100,
      ...withDefault(
        'Percentage points of transactions deferred (4xx to MAIL, every RCPT or DATA, or lost) above the healthiest other backend of the pool that eject a backend; from a fifth of it on its weight is cut, down to 1/16.',
        OD.deferralPercent,
      ),
    }),
    consecutiveFailures: Type.Integer({
      minimum: 0,
      maximum: 1000,
      ...withDefault(
        'Connections in a row that fail before the session (refused, timed out, a 421 or other non-220 greeting, EHLO, TLS) and eject a backend; 0 is off.',
        OD.consecutiveFailures,
      ),
    }),
    baseEjectionTime: Duration(
      'The first ejection lasts this long, the n-th n times as long; one ejection is forgiven per base time back in the pool.',
      OD.baseEjectionTime,
    ),
    maxEjectionTime: Duration('No ejection lasts longer.', OD.maxEjectionTime),
    maxEjectedPercent: Type.Integer({
      minimum: 0,
      maximum: 100,
      ...withDefault(
        'Backends of the pool ejected at once, in percent of its backends (at least one, never all); the others beyond it keep 1/16 of their weight.',
        OD.maxEjectedPercent,
      ),
    }),
  },
  [],
  {
    description:
      'Reply-aware passive health of this node (`static` and `consul` pools): set (`{}` takes the defaults) to eject backends that fail connections or defer far more than the others; absent: off.',
  },
);

export const PoolSchema = Closed(
  {
    static: Type.Array(StaticBackendSchema, {
      minItems: 1,
      description: 'Fixed backend list (set this, `consul`, `mx` or `originalDestination`).',
    }),
    consul: Closed(
      {
        service: Text('Consul service whose passing instances are the backends (set this or `static`).'),
        tag: Text('Only instances with this tag.'),
        datacenter: Text('Datacenter to query.', { defaultText: "`consul.datacenter`, else the agent's" }),
      },
      ['service'],
    ),
    mx: MxPoolSchema,
    originalDestination: OriginalDestinationPoolSchema,
    xclient: OneOf(
      XCLIENT_MODES,
      'Pass client identity by XCLIENT when the backend offers it (`mx` and `originalDestination` pools: `off` unless set).',
      DEFAULTS.pool.xclient,
    ),
    proxyProtocol: OneOf(
      PROXY_VERSIONS,
      'Send a PROXY header with the client address to the backend.',
      DEFAULTS.pool.proxyProtocol,
    ),
    tls: Type.Union([OneOf(TLS_MODES, ''), PoolTlsSchema], {
      description: 'A TLS mode, or a map with `mode`, `verify`, `ca`, `servername`.',
      default: DEFAULTS.pool.tlsMode,
    }),
    timeouts: Closed(
      {
        connect: Duration('TCP connect to a backend.', DEFAULTS.pool.timeouts.connect),
        greeting: Duration('Wait for the 220 greeting.', DEFAULTS.pool.timeouts.greeting),
        command: Duration(
          'Reply to EHLO, STARTTLS, XCLIENT, MAIL, RCPT, RSET.',
          DEFAULTS.pool.timeouts.command,
        ),
        dataStart: Duration('Reply to DATA (354).', DEFAULTS.pool.timeouts.dataStart),
        dataDone: Duration('Reply after the final dot (RFC 5321: 10 min).', DEFAULTS.pool.timeouts.dataDone),
      },
      [],
    ),
    connectRetries: Type.Integer({
      minimum: 0,
      maximum: 10,
      ...withDefault(
        'Other backends tried when connect, greeting or EHLO fails.',
        DEFAULTS.pool.connectRetries,
      ),
    }),
    heloName: Domain('Name we send in EHLO to the backend.', { defaultText: "the listener's `hostname`" }),
    outlierDetection: OutlierDetectionSchema,
  },
  [],
);

export const RouteSchema = Closed(
  {
    recipientDomain: Type.String({
      pattern: ROUTE_DOMAIN_PATTERN,
      description: 'Recipient domain, exact or `*.example.com` (any subdomain); case-insensitive.',
      syntax: 'domain',
      errorMessage: 'expected a domain like example.com or *.example.com',
    }),
    recipientMap: Name(
      'Recipient map (in `recipientMaps`): matches recipients the map knows; without `pool` each goes to the pool the map names.',
    ),
    senderDomain: Type.String({
      pattern: ROUTE_DOMAIN_PATTERN,
      description: 'Sender domain, same syntax.',
      syntax: 'domain',
      errorMessage: 'expected a domain like example.com or *.example.com',
    }),
    listener: Name('Only sessions on this listener.'),
    pool: Name('Pool for the recipients this route matches.', {
      defaultText: "required, except with `recipientMap`: the map's value",
    }),
  },
  [],
);

/** A Redis master found through Sentinel (`ledger.redisSentinel`, a redis map's `sentinel`). */
function redisSentinelSchema(insteadOf: string) {
  return Closed(
    {
      sentinels: Type.Array(Address('A sentinel.'), {
        minItems: 1,
        description: `Sentinels to ask for the current master, instead of \`${insteadOf}\`.`,
      }),
      masterName: Text('Name of the master the sentinels monitor.'),
      username: Text('ACL user on the master and replicas.'),
      password: Text('Password of the master and replicas.'),
      sentinelUsername: Text('ACL user on the sentinels.'),
      sentinelPassword: Text('Password of the sentinels.'),
      db: Type.Integer({ minimum: 0, ...withDefault('Database number.', 0) }),
    },
    ['sentinels', 'masterName'],
  );
}

/** TLS to Redis (`ledger.tls`, a redis map's `tls`): PEM files the proxy reads at start. */
function redisTlsSchema(description: string) {
  return Closed(
    {
      ca: Text('PEM file of the CAs to trust (default: the system store).', { syntax: 'path' }),
      cert: Text('PEM client certificate file (with `key`, for `tls-auth-clients`).', {
        syntax: 'path',
      }),
      key: Text('PEM private key file of `cert`.', { syntax: 'path' }),
      servername: Domain('Name for SNI and the certificate check.', {
        defaultText: 'the host connected to',
      }),
    },
    [],
    { description },
  );
}

const RM = DEFAULTS.recipientMap;

export const RecipientMapSchema = Closed(
  {
    file: Text(
      'Postfix-style map file (`alice@example.com sales`, `@example.com default`); re-read on SIGHUP and when it changes.',
      { syntax: 'path' },
    ),
    redis: Closed(
      {
        prefix: Text('Keys mode: the answer for a key is `GET <prefix><key>`.', {
          defaultText: `\`${RM.redisPrefix}\``,
        }),
        hash: Text('Hash mode instead: `HGET <hash> <key>`.'),
        url: Type.String({
          description: 'Redis URL (`redis://` or `rediss://`).',
          defaultText: "the ledger's Redis (`redis`, `redisCluster` or `redisSentinel`, with its `tls`)",
          syntax: 'URL',
        }),
        cluster: Type.Array(Type.String({ syntax: 'URL' }), {
          minItems: 1,
          description: 'Seed node URLs of a Redis Cluster, instead of `url`.',
        }),
        sentinel: redisSentinelSchema('url'),
        tls: redisTlsSchema(
          "TLS to this map's Redis (and its sentinels), as `ledger.tls`; without `url`, `cluster` and `sentinel` it replaces the ledger's.",
        ),
      },
      [],
    ),
    ldap: Closed(
      {
        url: Type.String({
          description: 'Directory server, `ldap://host:port` or `ldaps://host:port`.',
          syntax: 'URL',
        }),
        base: Text('Search base, e.g. `ou=people,dc=example,dc=com`.'),
        filter: Text(
          'Search filter; `%s` is the key (address or `@domain`), `%u` its local part, `%d` its domain, `%%` a percent sign (values RFC 4515-escaped).',
          { default: RM.ldapFilter },
        ),
        scope: OneOf(['base', 'one', 'sub'], 'Search scope.', RM.ldapScope),
        attribute: Text(
          'Attribute whose first value is the answer (the pool name); absent: any entry means the recipient exists.',
        ),
        bindDn: Text('DN to bind as; absent: anonymous.'),
        bindPassword: Text('Password of `bindDn`.'),
        ca: Text('PEM file of CAs that sign the server certificate (ldaps:// or STARTTLS).', {
          syntax: 'path',
        }),
        startTls: Type.Boolean(withDefault('STARTTLS on an ldap:// URL before binding.', false)),
        verify: Type.Boolean(withDefault("Check the server's certificate chain and name.", true)),
        connections: Type.Integer({
          minimum: 1,
          maximum: 64,
          ...withDefault('Connections per node, each bound once and used round robin.', RM.ldapConnections),
        }),
      },
      ['url', 'base'],
    ),
    cacheTtl: Duration('Found answers are kept per node this long; 0 is no cache.', RM.cacheTtl),
    negativeCacheTtl: Duration('"Not found" answers are kept this long.', RM.negativeCacheTtl),
    cacheSize: Type.Integer({
      minimum: 0,
      ...withDefault('Most answers cached per node and map (oldest evicted first).', RM.cacheSize),
    }),
    recipientDelimiter: Type.String({
      maxLength: 8,
      ...withDefault(
        'Characters that start an address extension: `alice+tag@` is looked up as itself, then `alice@`; empty is off.',
        RM.recipientDelimiter,
      ),
    }),
    timeout: Duration('A lookup not answered within this fails (451 4.3.0).', RM.timeout),
  },
  [],
);

const SH = DEFAULTS.shaping;

function Cidr(description: string) {
  return Type.String({
    ...withDefault(description, undefined),
    syntax: 'CIDR',
    errorMessage: 'expected an address or CIDR like 10.0.0.0/8',
  });
}

function Count(description: string, dflt: number) {
  return Type.Integer({ minimum: 0, ...withDefault(description, dflt) });
}

function Rate(what: string, window: string) {
  return Closed(
    {
      limit: Count(`${what} per window and client address; 0 is off.`, SH.limits.rateLimit),
      window: Duration('Length of the sliding window (at least 1s).', window),
    },
    [],
  );
}

/** postscreen's DNSBL return-code filter syntax: `127.0.0.2`, `127.0.0.[2..11]`, `127.0.[1;3;5].2`. */
export const DNSBL_CODE_PATTERN =
  '^(?:(?:[0-9]{1,3}|\\[[0-9]{1,3}(?:\\.\\.[0-9]{1,3})?(?:;[0-9]{1,3}(?:\\.\\.[0-9]{1,3})?)*\\])\\.){3}(?:[0-9]{1,3}|\\[[0-9]{1,3}(?:\\.\\.[0-9]{1,3})?(?:;[0-9]{1,3}(?:\\.\\.[0-9]{1,3})?)*\\])$';

export const ShapingSchema = Closed(
  {
    allow: Type.Array(Cidr(''), {
      description: 'Clients (CIDRs or addresses) exempt from limits, DNSBL, greeting delay and tarpit.',
      default: [],
    }),
    limits: Closed(
      {
        sessionsPerAddress: Count(
          'Concurrent sessions per client address, cluster-wide (Redis when `ledger.redis` is set); 0 is off.',
          SH.limits.sessionsPerAddress,
        ),
        sessionsPerPrefix: Count(
          'Concurrent sessions per /24 (IPv4) or /64 (IPv6), cluster-wide; 0 is off.',
          SH.limits.sessionsPerPrefix,
        ),
        connectionRate: Rate('New connections', SH.limits.connectionWindow),
        messageRate: Rate('Mail transactions (MAIL FROM)', SH.limits.messageWindow),
        action: OneOf(SHAPING_ACTIONS, 'Over a limit: 421 4.7.0 and close, or the tarpit.', SH.limits.action),
      },
      [],
    ),
    tarpit: Closed(
      {
        delay: Duration('Every reply of a tarpitted session is held this long.', SH.tarpit.delay),
        maxSessions: Type.Integer({
          minimum: 1,
          ...withDefault('Tarpitted sessions per node; beyond it 421 4.7.0.', SH.tarpit.maxSessions),
        }),
        rejectedRecipients: Count(
          'RCPT replies of 400 or more in one session that tarpit it; 0 is off.',
          SH.tarpit.rejectedRecipients,
        ),
      },
      [],
    ),
    greeting: Closed(
      {
        delay: Duration(
          'Wait this long before the greeting, watching for clients that talk first; 0 is off.',
          SH.greeting.delay,
        ),
        earlyTalker: OneOf(
          SHAPING_ACTIONS,
          'A client that talks before the greeting: 554 5.5.1 and close, or the tarpit.',
          SH.greeting.earlyTalker,
        ),
      },
      [],
    ),
    dnsbl: Closed(
      {
        zones: Type.Array(
          Closed(
            {
              zone: Domain('DNSBL or DNSWL zone, e.g. zen.spamhaus.org.'),
              weight: Type.Integer({
                ...withDefault('Added to the score when listed; negative for allow lists.', SH.dnsbl.weight),
              }),
              codes: Type.Array(
                Type.String({
                  pattern: DNSBL_CODE_PATTERN,
                  syntax: 'DNSBL code',
                  errorMessage: 'expected an address pattern like 127.0.0.2 or 127.0.0.[2..11]',
                }),
                { description: 'Only these answers count (`127.0.0.[2..11]`); absent: any answer.' },
              ),
            },
            ['zone'],
          ),
          { minItems: 1, description: 'Zones asked about each client, like postscreen_dnsbl_sites.' },
        ),
        threshold: Type.Integer({
          ...withDefault('A score at or above this makes the client listed.', SH.dnsbl.threshold),
        }),
        action: OneOf(
          SHAPING_ACTIONS,
          'A listed client: 554 5.7.1 and close, or the tarpit.',
          SH.dnsbl.action,
        ),
        resolvers: Type.Array(Address(''), {
          description: "DNS servers to ask (`host:port`); absent: the system's.",
        }),
        timeout: Duration('Per query; a zone that does not answer counts 0 (fail open).', SH.dnsbl.timeout),
        negativeTtl: Duration(
          'How long a "not listed" answer is cached (listed answers keep their TTL).',
          SH.dnsbl.negativeTtl,
        ),
      },
      ['zones'],
    ),
    policy: Closed(
      {
        address: Address('Postfix policy delegation server, e.g. postgrey at 127.0.0.1:10023.'),
        timeout: Duration('Wait this long for an answer, then `onError`.', SH.policy.timeout),
        at: Type.Array(OneOf(['rcpt', 'data'], ''), {
          minItems: 1,
          description: 'Ask at each RCPT, and/or at the end of DATA before the backend gets the final dot.',
          default: SH.policy.at,
        }),
        onError: OneOf(
          ['accept', 'defer'],
          'No answer in time or a broken connection: go on (fail open), or 451 4.3.5.',
          SH.policy.onError,
        ),
      },
      ['address'],
    ),
  },
  [],
  { description: 'Traffic shaping: per-client limits, tarpit, early talkers, DNSBL, policy service.' },
);

const SE = DEFAULTS.senders;

function SenderRate(what: string) {
  return Closed(
    {
      limit: Count(`${what} per window and authenticated user, cluster-wide; 0 is off.`, SE.rateLimit),
      window: Duration('Length of the sliding window (at least 1s).', SE.window),
    },
    [],
  );
}

export const SendersSchema = Closed(
  {
    limits: Closed(
      {
        messages: SenderRate('Messages (MAIL FROM)'),
        recipients: SenderRate('Recipients (RCPT TO)'),
        sessions: Count('Concurrent sessions per user, cluster-wide; 0 is off.', SE.sessions),
      },
      [],
    ),
    onExceed: OneOf(
      ['reject', 'suspend'],
      'Over a limit: 450 4.7.1 for now, or suspend the user cluster-wide (554 5.7.1 until lifted by the admin API).',
      SE.onExceed,
    ),
    ownAddresses: Type.Boolean(
      withDefault(
        "MAIL FROM must be the user's address, one the verifier listed, or of the user's domain (553 5.7.1).",
        SE.ownAddresses,
      ),
    ),
  },
  [],
  { description: 'Per authenticated user, cluster-wide: limits, suspension, sender addresses.' },
);

// Per client host of outbound listeners (issue 14), cluster-wide like `senders`.
const HO = DEFAULTS.hosts;

function HostRate(what: string) {
  return Closed(
    {
      limit: Count(`${what} per window and client host, cluster-wide; 0 is off.`, HO.rateLimit),
      window: Duration('Length of the sliding window (at least 1s).', HO.window),
    },
    [],
  );
}

export const HostsSchema = Closed(
  {
    limits: Closed(
      {
        messages: HostRate('Messages (MAIL FROM)'),
        recipients: HostRate('Recipients (RCPT TO)'),
        domains: HostRate('Distinct recipient domains (estimated by the sliding window)'),
      },
      [],
    ),
    rejections: HostRate('5xx replies to RCPT and at the end of DATA (from destinations or the node)'),
    onExceed: OneOf(
      ['reject', 'lockout'],
      'Over a limit: 450 4.7.1 for now, or lock the host out cluster-wide for `lockout` (554 5.7.1; liftable by the admin API). Over `rejections` always locks out.',
      HO.onExceed,
    ),
    lockout: Duration('How long a host stays locked out.', HO.lockout),
  },
  [],
  {
    description:
      'Per client host of outbound listeners, cluster-wide: limits and lock-out (sessions per host: `shaping.limits.sessionsPerAddress`).',
  },
);

export const ConfigFileSchema = Closed(
  {
    node: Closed(
      { id: Text('Unique name of this node in the cluster.', { defaultText: '`<host name>-<pid>`' }) },
      [],
    ),
    listeners: Type.Array(ListenerSchema, { minItems: 1, description: 'SMTP listeners; at least one.' }),
    pools: Type.Record(Type.String({ pattern: NAME_PATTERN }), PoolSchema, {
      ...closed,
      minProperties: 1,
      description: 'Backend pools by name; at least one.',
    }),
    routes: Type.Array(RouteSchema, {
      description: 'Checked in order; the first whose conditions all hold picks the pool.',
      default: [],
    }),
    balancing: Closed(
      {
        policy: OneOf(
          ['least-connections', 'weighted-least-connections', 'weighted-round-robin', 'power-of-two-choices'],
          'How a backend is picked.',
          DEFAULTS.balancing.policy,
        ),
        defaultMaxConnections: Type.Integer({
          minimum: 1,
          ...withDefault(
            'Cap of backends that set none (static `maxConnections`, Consul meta).',
            DEFAULTS.balancing.defaultMaxConnections,
          ),
        }),
      },
      [],
    ),
    admission: Closed(
      {
        queueTimeout: Duration(
          'Wait this long for a free backend slot, then 451 4.3.2.',
          DEFAULTS.admission.queueTimeout,
        ),
        maxWaiting: Type.Integer({
          minimum: 0,
          ...withDefault(
            'Sessions waiting for a slot per node; beyond it the 451 is immediate.',
            DEFAULTS.admission.maxWaiting,
          ),
        }),
      },
      [],
    ),
    ledger: Closed(
      {
        redis: Type.String({
          description: 'Redis URL (`redis://` or `rediss://`) for cluster-wide caps; absent: caps per node.',
          syntax: 'URL',
        }),
        redisCluster: Type.Array(Type.String({ syntax: 'URL' }), {
          minItems: 1,
          description:
            'Seed node URLs of a Redis Cluster, instead of `redis`. Run it with `cluster-require-full-coverage no`: a failed master then degrades only the backends whose keys it holds.',
        }),
        redisSentinel: redisSentinelSchema('redis'),
        tls: redisTlsSchema(
          'TLS to Redis (every mode; with Sentinel, to the sentinels too); on as soon as the section is there.',
        ),
        leaseTtl: Duration(
          'Connections of a dead node stop counting after this (at least 1s).',
          DEFAULTS.ledger.leaseTtl,
        ),
        onRedisDown: OneOf(
          ['local-share', 'reject'],
          'Redis unreachable: keep to cap / live nodes, or refuse new sessions.',
          DEFAULTS.ledger.onRedisDown,
        ),
        keyPrefix: Text('Prefix of every Redis key.', { default: DEFAULTS.ledger.keyPrefix }),
      },
      [],
    ),
    consul: Closed(
      {
        address: Type.String({
          ...withDefault('Consul agent HTTP API.', DEFAULTS.consul.address),
          syntax: 'URL',
        }),
        token: Text('ACL token.'),
        datacenter: Text('Default datacenter of the Consul pools.'),
        ca: Text('PEM CA file for an HTTPS agent.', { syntax: 'path' }),
      },
      [],
    ),
    admin: Closed(
      {
        listen: Address('Admin HTTP: /metrics, /healthz, /readyz, /status.', DEFAULTS.admin.listen),
        token: Text('Bearer token required for /status.'),
      },
      [],
    ),
    log: Closed(
      {
        level: OneOf(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace'],
          'Least severe level logged.',
          DEFAULTS.log.level,
        ),
      },
      [],
    ),
    drainTimeout: Duration(
      'On SIGTERM, sessions get this long to finish their transaction.',
      DEFAULTS.drainTimeout,
    ),
    shaping: ShapingSchema,
    senders: SendersSchema,
    hosts: HostsSchema,
    recipientMaps: Type.Record(Type.String({ pattern: NAME_PATTERN }), RecipientMapSchema, {
      ...closed,
      description:
        'Recipient maps by name (one of `file`, `redis`, `ldap` each): routes by map and recipient verification. Looked up as the full address, then without its extension, then `@domain`.',
    }),
    scanners: Type.Record(Type.String({ pattern: NAME_PATTERN }), ScannerSchema, {
      ...closed,
      description: 'Content scanners by name, each `rspamd` or `milter`; a listener uses them with `scan`.',
      syntax: 'map of name → scanner',
    }),
  },
  ['listeners', 'pools'],
);

/** The YAML file as parsed, before defaults, env expansion checks and unit conversion. */
export type RawConfig = Static<typeof ConfigFileSchema>;

/** True for a schema of an object with named properties (not a record). */
export function isObjectSchema(schema: TSchema): boolean {
  return schema.type === 'object' && typeof schema.properties === 'object';
}
