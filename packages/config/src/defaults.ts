// Every default of the config file, written in the file's own syntax. The schema shows them as
// JSON Schema `default` annotations (and so in the README table); resolve.ts applies them.

export const DEFAULTS = {
  listener: {
    maxMessageSize: '50MB',
    maxRecipients: 1000,
    bareNewlines: 'normalize',
    nulBytes: 'reject',
    idleTimeout: '5m',
    commandTimeout: '5m',
    minDataRate: 500,
    maxSessions: 10000,
    tlsImplicit: false,
  },
  pool: {
    xclient: 'auto',
    proxyProtocol: 'off',
    tlsMode: 'opportunistic',
    tlsVerify: true,
    connectRetries: 2,
    timeouts: { connect: '5s', greeting: '30s', command: '1m', dataStart: '2m', dataDone: '10m' },
  },
  backend: { weight: 1 },
  mx: { port: 25, timeout: '5s', maxHosts: 10, maxTtl: '1h' },
  balancing: { policy: 'least-connections', defaultMaxConnections: 100 },
  admission: { queueTimeout: '30s', maxWaiting: 1000 },
  ledger: { leaseTtl: '15s', onRedisDown: 'local-share', keyPrefix: 'smtp-lb' },
  consul: { address: 'http://127.0.0.1:8500' },
  admin: { listen: '127.0.0.1:9090' },
  log: { level: 'info' },
  drainTimeout: '30s',
  proxyProtocol: { timeout: '10s' },
  auth: {
    role: 'inbound',
    allowPlaintext: false,
    cacheTtl: '0s',
    httpTimeout: '2s',
    backendTimeout: '10s',
    failures: { perClient: 10, perUser: 10, window: '15m', action: 'reject' },
  },
  senders: {
    rateLimit: 0,
    window: '1h',
    sessions: 0,
    onExceed: 'reject',
    ownAddresses: true,
  },
  scanner: { timeout: '10s', onError: 'accept', maxSize: '20MB' },
  shaping: {
    limits: {
      sessionsPerAddress: 0,
      sessionsPerPrefix: 0,
      rateLimit: 0,
      connectionWindow: '1m',
      messageWindow: '1h',
      action: 'reject',
    },
    tarpit: { delay: '10s', maxSessions: 10000, rejectedRecipients: 0 },
    greeting: { delay: '0s', earlyTalker: 'reject' },
    dnsbl: { weight: 1, threshold: 1, action: 'tarpit', timeout: '2s', negativeTtl: '5m' },
    policy: { timeout: '5s', at: ['rcpt'], onError: 'accept' },
  },
  recipientMap: {
    cacheTtl: '1m',
    negativeCacheTtl: '10s',
    cacheSize: 100_000,
    recipientDelimiter: '+',
    timeout: '2s',
    redisPrefix: 'smtp-lb:rcpt:',
    ldapFilter: '(mail=%s)',
    ldapScope: 'sub',
    ldapConnections: 2,
  },
  recipients: { unknown: 'reject' },
} as const;

/** A lease shorter than this would expire between two renewals under ordinary load. */
export const MIN_LEASE_TTL = '1s';
