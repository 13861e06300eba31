// Every default of the config file, written in the file's own syntax. The schema shows them as
// JSON Schema `default` annotations (and so in the README table); resolve.ts applies them.

export const DEFAULTS = {
  listener: {
    maxMessageSize: '50MB',
    maxRecipients: 1000,
    bareNewlines: 'normalize',
    idleTimeout: '5m',
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
  balancing: { policy: 'least-connections', defaultMaxConnections: 100 },
  admission: { queueTimeout: '30s', maxWaiting: 1000 },
  ledger: { leaseTtl: '15s', onRedisDown: 'local-share', keyPrefix: 'smtp-lb' },
  consul: { address: 'http://127.0.0.1:8500' },
  admin: { listen: '127.0.0.1:9090' },
  log: { level: 'info' },
  drainTimeout: '30s',
} as const;

/** A lease shorter than this would expire between two renewals under ordinary load. */
export const MIN_LEASE_TTL = '1s';
