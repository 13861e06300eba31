// Accepted files: the resolved config has the right values, units converted and defaults filled.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadConfig } from '../src/index.js';
import { configOf, errorAt, errorsOf, fixture, withBase } from './helpers.js';

const T = { timeout: 5_000 };

test('a minimal file gets every default', T, () => {
  const c = configOf(readFileSync(fixture('minimal.yaml'), 'utf8'));
  assert.deepEqual(c, {
    node: { id: 'host1-42' },
    listeners: [
      {
        name: 'smtp',
        role: 'inbound',
        listen: { host: '127.0.0.1', port: 2525 },
        hostname: 'host1',
        pool: 'default',
        maxMessageSize: 50_000_000,
        maxRecipients: 1000,
        bareNewlines: 'normalize',
        nulBytes: 'reject',
        longLines: 'reject',
        dsn: true,
        timeouts: { idle: 300_000, command: 300_000, minDataRate: 500 },
        maxSessions: 10_000,
        scan: [],
      },
    ],
    pools: {
      default: {
        name: 'default',
        static: [{ address: { host: '127.0.0.1', port: 25 }, weight: 1, maxConnections: 100 }],
        xclient: 'auto',
        proxyProtocol: 'off',
        tls: { mode: 'opportunistic', verify: true },
        timeouts: { connect: 5000, greeting: 30_000, command: 60_000, dataStart: 120_000, dataDone: 600_000 },
        connectRetries: 2,
      },
    },
    routes: [],
    balancing: { policy: 'least-connections', defaultMaxConnections: 100 },
    admission: { queueTimeout: 30_000, maxWaiting: 1000 },
    ledger: { leaseTtl: 15_000, onRedisDown: 'local-share', keyPrefix: 'smtp-lb' },
    admin: { listen: { host: '127.0.0.1', port: 9090 } },
    log: { level: 'info' },
    drainTimeout: 30_000,
    shaping: {
      allow: [],
      limits: {
        sessionsPerAddress: 0,
        sessionsPerPrefix: 0,
        connectionRate: { limit: 0, window: 60_000 },
        messageRate: { limit: 0, window: 3_600_000 },
        action: 'reject',
      },
      tarpit: { delay: 10_000, maxSessions: 10_000, rejectedRecipients: 0 },
      greeting: { delay: 0, earlyTalker: 'reject' },
    },
    senders: {
      limits: {
        messages: { limit: 0, window: 3_600_000 },
        recipients: { limit: 0, window: 3_600_000 },
        sessions: 0,
      },
      onExceed: 'reject',
      ownAddresses: true,
    },
    hosts: {
      limits: {
        messages: { limit: 0, window: 3_600_000 },
        recipients: { limit: 0, window: 3_600_000 },
        domains: { limit: 0, window: 3_600_000 },
      },
      rejections: { limit: 0, window: 3_600_000 },
      onExceed: 'lockout',
      lockout: 3_600_000,
    },
    scanners: {},
  });
});

test("the full example resolves to the file's values", T, () => {
  const source = fixture('full.yaml');
  const result = loadConfig(source, { env: { CONSUL_TOKEN: 'tok' }, hostname: 'h', pid: 1 });
  assert.ok(result.ok, result.ok ? '' : JSON.stringify(result.errors));
  const c = result.config;
  const dir = source.slice(0, source.lastIndexOf('/'));
  assert.equal(c.node.id, 'node-a');

  const [inbound, submission] = c.listeners;
  assert.deepEqual(inbound?.proxyProtocol, { trusted: ['10.0.0.0/8', '192.168.1.7/32'], timeout: 3000 });
  assert.deepEqual(inbound?.tls, {
    cert: `${dir}/tls/tls.crt`,
    key: '/etc/smtp-lb/tls.key',
    implicit: false,
  });
  assert.equal(inbound?.maxRecipients, 500);
  assert.equal(inbound?.timeouts.idle, 120_000);
  assert.equal(inbound?.maxSessions, 2000);
  assert.deepEqual(submission?.listen, { host: '::', port: 465 });
  assert.equal(submission?.tls?.implicit, true);
  assert.equal(submission?.pool, 'sales');
  assert.equal(inbound?.role, 'inbound');
  assert.equal(inbound?.auth, undefined);
  assert.equal(submission?.role, 'submission');
  assert.deepEqual(submission?.auth, {
    required: true,
    verify: 'http',
    http: { url: 'https://auth.example.com/smtp', timeout: 3000 },
    timeout: 10_000,
    allowPlaintext: false,
    cacheTtl: 60_000,
    failures: { perClient: 20, perUser: 5, window: 600_000, action: 'tarpit' },
  });
  assert.deepEqual(c.senders, {
    limits: {
      messages: { limit: 500, window: 3_600_000 },
      recipients: { limit: 2000, window: 3_600_000 },
      sessions: 10,
    },
    onExceed: 'suspend',
    ownAddresses: false,
  });

  const def = c.pools.default!;
  assert.deepEqual(def.static, [
    { address: { host: '10.1.0.5', port: 25 }, weight: 2, maxConnections: 200 },
    { address: { host: '10.1.0.6', port: 25 }, weight: 1, maxConnections: 50 },
    {
      address: { host: 'fd00::7', port: 2525 },
      weight: 1,
      maxConnections: 50,
      tls: 'required',
      xclient: 'off',
      proxyProtocol: 'v2',
    },
  ]);
  assert.deepEqual(def.timeouts, {
    connect: 3000,
    greeting: 90_000,
    command: 45_000,
    dataStart: 90_000,
    dataDone: 900_000,
  });
  assert.equal(def.connectRetries, 3);
  assert.equal(def.heloName, 'relay.example.com');

  const sales = c.pools.sales!;
  assert.equal(sales.static, undefined);
  assert.deepEqual(sales.consul, { service: 'mta-sales', tag: 'smtp', datacenter: 'dc1' });
  assert.deepEqual(sales.tls, {
    mode: 'required',
    verify: false,
    ca: `${dir}/ca.pem`,
    servername: 'mta.sales.example.com',
  });

  assert.deepEqual(c.routes, [
    { recipientDomain: 'sales.example.com', pool: 'sales' },
    { senderDomain: '*.example.org', listener: 'submission', pool: 'default' },
  ]);
  assert.deepEqual(c.balancing, { policy: 'weighted-least-connections', defaultMaxConnections: 50 });
  assert.deepEqual(c.admission, { queueTimeout: 10_000, maxWaiting: 200 });
  assert.deepEqual(c.ledger, {
    redis: 'redis://127.0.0.1:6379/0',
    leaseTtl: 15_000,
    onRedisDown: 'reject',
    keyPrefix: 'smtp-lb-test',
  });
  assert.deepEqual(c.consul, { address: 'http://127.0.0.1:8500', token: 'tok', datacenter: 'dc1' });
  assert.deepEqual(c.admin, { listen: { host: '127.0.0.1', port: 9090 }, token: 'secret' });
  assert.equal(c.log.level, 'debug');
  assert.equal(c.drainTimeout, 45_000);
});

test('a Consul pool without a consul section talks to the local agent', T, () => {
  const c = configOf(
    withBase(
      `  sales:
    consul: { service: mta-sales }
`,
      '    pool: default\n',
    ),
  );
  assert.deepEqual(c.consul, { address: 'http://127.0.0.1:8500' });
  assert.deepEqual(configOf(withBase('')).consul, undefined, 'no Consul pool, no Consul');
});

test('durations, sizes and IPv6 in every place they are accepted', T, () => {
  const c = configOf(
    withBase(
      `drainTimeout: 1500
admission: { queueTimeout: 500ms }
ledger: { leaseTtl: 1h }
admin: { listen: '[::1]:0' }
`,
      `    maxMessageSize: 10MiB
    timeouts: { idle: 90s }
`,
    ),
  );
  assert.equal(c.drainTimeout, 1500);
  assert.equal(c.admission.queueTimeout, 500);
  assert.equal(c.ledger.leaseTtl, 3_600_000);
  assert.deepEqual(c.admin.listen, { host: '::1', port: 0 });
  assert.equal(c.listeners[0]?.maxMessageSize, 10_485_760);
  assert.equal(c.listeners[0]?.timeouts.idle, 90_000);
});

test('YAML anchors and merge keys share settings between pools', T, () => {
  const c = configOf(`listeners:
  - { name: smtp, listen: 127.0.0.1:2525, pool: a }
pools:
  a: &common
    static: [{ address: 10.0.0.1:25 }]
    tls: required
    connectRetries: 0
  b:
    <<: *common
    static: [{ address: 10.0.0.2:25 }]
`);
  assert.equal(c.pools.b?.tls.mode, 'required');
  assert.equal(c.pools.b?.connectRetries, 0);
  assert.deepEqual(c.pools.b?.static?.[0]?.address, { host: '10.0.0.2', port: 25 });
});

test('the shaping section resolves with units, zones, resolvers and the policy service', T, () => {
  const c = configOf(
    withBase(`shaping:
  allow: [192.0.2.0/24, 2001:db8::1]
  limits:
    sessionsPerAddress: 5
    sessionsPerPrefix: 20
    connectionRate: { limit: 30, window: 10s }
    messageRate: { limit: 100 }
    action: tarpit
  tarpit: { delay: 15s, maxSessions: 500, rejectedRecipients: 3 }
  greeting: { delay: 2s, earlyTalker: tarpit }
  dnsbl:
    zones:
      - { zone: Zen.Spamhaus.org., weight: 2, codes: ['127.0.0.[2..11]', 127.0.0.20] }
      - { zone: list.dnswl.org, weight: -5 }
    threshold: 2
    resolvers: [127.0.0.1:5353]
    timeout: 500ms
  policy: { address: 127.0.0.1:10023, at: [rcpt, data], onError: defer }
`),
  );
  assert.deepEqual(c.shaping, {
    allow: ['192.0.2.0/24', '2001:db8::1/128'],
    limits: {
      sessionsPerAddress: 5,
      sessionsPerPrefix: 20,
      connectionRate: { limit: 30, window: 10_000 },
      messageRate: { limit: 100, window: 3_600_000 },
      action: 'tarpit',
    },
    tarpit: { delay: 15_000, maxSessions: 500, rejectedRecipients: 3 },
    greeting: { delay: 2000, earlyTalker: 'tarpit' },
    dnsbl: {
      zones: [
        { zone: 'zen.spamhaus.org', weight: 2, codes: ['127.0.0.[2..11]', '127.0.0.20'] },
        { zone: 'list.dnswl.org', weight: -5, codes: [] },
      ],
      threshold: 2,
      action: 'tarpit',
      resolvers: [{ host: '127.0.0.1', port: 5353 }],
      timeout: 500,
      negativeTtl: 300_000,
    },
    policy: {
      address: { host: '127.0.0.1', port: 10023 },
      timeout: 5000,
      at: ['rcpt', 'data'],
      onError: 'defer',
    },
  });
});

test('destination pools: units, lower-cased host caps, default deny list and no XCLIENT', T, () => {
  const c = configOf(
    withBase(
      `  internet:
    mx: { port: 2525, resolvers: ['[::1]:53'], timeout: 2s, hosts: [{ host: MX.Example.COM., maxConnections: 3 }] }
  intercepted:
    originalDestination: { denyDestinations: [10.0.0.0/8, 192.0.2.1], maxConnections: 7 }
    xclient: auto
`,
      '    pool: default\n',
    ),
  );
  const mx = c.pools.internet!;
  assert.deepEqual(mx.mx, {
    port: 2525,
    resolvers: [{ host: '::1', port: 53 }],
    timeout: 2000,
    maxHosts: 10,
    maxTtl: 3_600_000,
    denyDestinations: [
      '127.0.0.0/8',
      '::1/128',
      '169.254.0.0/16',
      'fe80::/10',
      '0.0.0.0/8',
      '::/128',
      '224.0.0.0/4',
      'ff00::/8',
    ],
    maxConnections: 100,
    hosts: [{ host: 'mx.example.com', maxConnections: 3 }],
  });
  assert.equal(mx.xclient, 'off');
  assert.deepEqual(c.pools.intercepted!.originalDestination, {
    denyDestinations: ['10.0.0.0/8', '192.0.2.1/32'],
    maxConnections: 7,
    hosts: [],
  });
  assert.equal(c.pools.intercepted!.xclient, 'auto');
});

test("an outbound listener's clients join the default deny list of destination pools", T, () => {
  const c = configOf(`listeners:
  - { name: out, role: outbound, listen: 127.0.0.1:2525, pool: internet, clients: [10.1.0.0/16, 192.0.2.7] }
pools:
  internet:
    mx: {}
  intercepted:
    originalDestination: { denyDestinations: [203.0.113.0/24] }
`);
  assert.deepEqual(c.listeners[0]!.clients, ['10.1.0.0/16', '192.0.2.7/32']);
  assert.deepEqual(c.pools.internet!.mx!.denyDestinations.slice(-2), ['10.1.0.0/16', '192.0.2.7/32']);
  assert.deepEqual(c.pools.intercepted!.originalDestination!.denyDestinations, ['203.0.113.0/24']);
});

test('ledger through Sentinel, with TLS files taken from the config folder', T, () => {
  const c = configOf(
    withBase(`ledger:
  redisSentinel:
    sentinels: [10.0.0.1:26379, "[fd00::2]:26379"]
    masterName: mymaster
    password: \${REDIS_PASSWORD}
    sentinelPassword: sent
  tls: { ca: ca.pem, cert: /etc/smtp-lb/redis.crt, key: redis.key, servername: redis.internal }
`),
    { source: '/etc/smtp-lb/smtp-lb.yaml', env: { REDIS_PASSWORD: 'pw' } },
  );
  assert.deepEqual(c.ledger, {
    redisSentinel: {
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: 'fd00::2', port: 26379 },
      ],
      masterName: 'mymaster',
      password: 'pw',
      sentinelPassword: 'sent',
      db: 0,
    },
    tls: {
      ca: '/etc/smtp-lb/ca.pem',
      cert: '/etc/smtp-lb/redis.crt',
      key: '/etc/smtp-lb/redis.key',
      servername: 'redis.internal',
    },
    leaseTtl: 15_000,
    onRedisDown: 'local-share',
    keyPrefix: 'smtp-lb',
  });
});

test(
  'outlierDetection: absent is off, {} takes the defaults, values in ms; only on pools of own backends',
  T,
  () => {
    assert.equal(configOf(withBase('')).pools.default!.outlierDetection, undefined);
    assert.deepEqual(configOf(withBase('    outlierDetection: {}\n')).pools.default!.outlierDetection, {
      window: 60_000,
      minimumVolume: 20,
      deferralPercent: 50,
      consecutiveFailures: 5,
      baseEjectionTime: 30_000,
      maxEjectionTime: 300_000,
      maxEjectedPercent: 50,
    });
    const set = configOf(
      withBase(
        '    outlierDetection: { window: 30s, baseEjectionTime: 10s, maxEjectionTime: 1m, consecutiveFailures: 0 }\n',
      ),
    ).pools.default!.outlierDetection!;
    assert.deepEqual(
      [set.window, set.baseEjectionTime, set.maxEjectionTime, set.consecutiveFailures],
      [30_000, 10_000, 60_000, 0],
    );
    const errors =
      errorsOf(`${withBase('    outlierDetection: { baseEjectionTime: 1m, maxEjectionTime: 30s, deferralPercent: 0, window: 500ms }\n')}  internet:
    mx: {}
    outlierDetection: {}
`);
    assert.match(
      errorAt(errors, 'pools.default.outlierDetection.maxEjectionTime').message,
      /at least baseEjectionTime/,
    );
    assert.match(
      errorAt(errors, 'pools.default.outlierDetection.deferralPercent').message,
      />= 1|at least|minimum/i,
    );
    assert.match(errorAt(errors, 'pools.default.outlierDetection.window').message, /at least 1s/);
    assert.match(errorAt(errors, 'pools.internet.outlierDetection').message, /only static and consul pools/);
  },
);
