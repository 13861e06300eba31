// Refused files: every mistake is reported once, at its path, with a short message, all at once.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { errorAt, errorsOf, fixture, withBase } from './helpers.js';

const T = { timeout: 5_000 };

test('an unknown key deep in the file is named, with a suggestion', T, () => {
  const errors = errorsOf(
    withBase(`  other:
    static:
      - { address: 10.1.0.5:25, maxConection: 200 }
`),
  );
  assert.deepEqual(errorAt(errors, 'pools.other.static[0].maxConection'), {
    path: 'pools.other.static[0].maxConection',
    code: 'EUNKNOWN',
    message: 'unknown key (did you mean "maxConnections"?)',
  });
  const top = errorAt(errorsOf(withBase('listener: {}\n')), 'listener');
  assert.equal(top.message, 'unknown key (did you mean "listeners"?)');
});

test('bad addresses', T, () => {
  const errors = errorsOf(
    withBase(`  b:
    static:
      - address: 10.1.0.5
      - address: "::1:25"
      - address: 10.1.0.5:70000
admin:
  listen: localhost
`),
  );
  assert.equal(
    errorAt(errors, 'pools.b.static[0].address').message,
    'expected host:port (IPv6 as [::1]:25), got "10.1.0.5"',
  );
  assert.match(errorAt(errors, 'pools.b.static[1].address').message, /^expected host:port/);
  assert.equal(errorAt(errors, 'pools.b.static[2].address').message, 'port must be 1-65535, got "70000"');
  assert.match(errorAt(errors, 'admin.listen').message, /^expected host:port/);
});

test('bad durations and sizes', T, () => {
  const errors = errorsOf(
    withBase(
      `admission:
  queueTimeout: 30 seconds
`,
      `    maxMessageSize: 50 megs
    timeouts: { idle: 0 }
`,
    ),
  );
  assert.equal(
    errorAt(errors, 'admission.queueTimeout').message,
    'expected a duration like 500ms, 30s, 5m or 1h, got "30 seconds"',
  );
  assert.equal(
    errorAt(errors, 'listeners[0].maxMessageSize').message,
    'expected a size like 50MB, 512KB or 10MiB, got "50 megs"',
  );
  assert.equal(errorAt(errors, 'listeners[0].timeouts.idle').message, 'must be at least 1s');
});

test('a pool that is not defined', T, () => {
  const errors = errorsOf(
    withBase(
      `routes:
  - { recipientDomain: sales.example.com, pool: sales }
`,
      '    pool: inbound\n',
    ),
  );
  assert.deepEqual(errorAt(errors, 'listeners[0].pool'), {
    path: 'listeners[0].pool',
    code: 'EREF',
    message: 'unknown pool "inbound" (defined: default)',
  });
  assert.equal(errorAt(errors, 'routes[0].pool').message, 'unknown pool "sales" (defined: default)');
});

test('a pool of two kinds, and one of none', T, () => {
  const errors = errorsOf(
    withBase(`    consul: { service: mta }
  empty:
    xclient: off
  both:
    mx: {}
    originalDestination: {}
`),
  );
  assert.deepEqual(errorAt(errors, 'pools.default'), {
    path: 'pools.default',
    code: 'ECONFLICT',
    message: 'set one of static, consul, not several',
  });
  assert.equal(
    errorAt(errors, 'pools.empty').message,
    'needs one of static, consul, mx, originalDestination',
  );
  assert.equal(errorAt(errors, 'pools.both').message, 'set one of mx, originalDestination, not several');
});

test('destination pools: every mistake at its path', T, () => {
  const errors = errorsOf(
    withBase(`  internet:
    mx: { port: 0, resolvers: [nowhere], timeout: 0, maxHosts: 0, denyDestinations: [10.0.0.0/33], hosts: [{ host: mx.example.com }] }
  intercepted:
    originalDestination: { maxConnections: 0, extra: 1 }
`),
  ).map((e) => e.path);
  for (const path of [
    'pools.internet.mx.port',
    'pools.internet.mx.resolvers[0]',
    'pools.internet.mx.timeout',
    'pools.internet.mx.maxHosts',
    'pools.internet.mx.denyDestinations[0]',
    'pools.internet.mx.hosts[0].maxConnections',
    'pools.intercepted.originalDestination.maxConnections',
    'pools.intercepted.originalDestination.extra',
  ]) {
    assert.ok(errors.includes(path), `${path} in ${errors.join(', ')}`);
  }
});

test('cross-field rules', T, () => {
  const text = `listeners:
  - { name: a, listen: 0.0.0.0:25, maxRecipients: 50, proxyProtocol: { trusted: [10.0.0.0/40] } }
  - { name: a, listen: 10.0.0.1:25 }
  - { name: b, listen: '[::1]:9090' }
pools:
  one:
    static:
      - { address: 10.1.0.5:25, weight: 0 }
      - { address: 10.1.0.5:25 }
  two:
    static: []
routes:
  - { pool: one }
admin:
  listen: 0.0.0.0:9090
`;
  const errors = errorsOf(text);
  const at = (path: string) => errorAt(errors, path).message;
  assert.equal(
    at('listeners[0].maxRecipients'),
    'expected a whole number of at least 100 (RFC 5321 4.5.3.1.8), got 50',
  );
  assert.equal(at('listeners[0].proxyProtocol.trusted[0]'), 'prefix length must be 0-32, got "40"');
  assert.equal(at('listeners[0].pool'), 'required when there is more than one pool');
  assert.equal(at('listeners[1].name'), 'duplicate listener name (also listeners[0])');
  assert.equal(at('listeners[1].listen'), 'port 25 is already taken by listeners[0]');
  assert.equal(at('pools.one.static[0].weight'), 'must be greater than 0, got 0');
  assert.equal(at('pools.one.static[1].address'), 'duplicate backend (also static[0])');
  assert.equal(at('pools.two.static'), 'must not be empty');
  assert.equal(at('routes[0]'), 'needs recipientDomain, recipientMap, senderDomain or listener');
  assert.equal(at('admin.listen'), 'port 9090 is already taken by listeners[2]');
});

test('required sections and an empty file', T, () => {
  assert.deepEqual(
    errorsOf('log: { level: info }\n').map((e) => `${e.path}: ${e.message}`),
    ['listeners: required', 'pools: required'],
  );
  assert.deepEqual(errorsOf('# nothing\n'), [
    { path: '(root)', code: 'EREQUIRED', message: 'the file has no settings' },
  ]);
  assert.equal(errorsOf('- a\n- b\n')[0]?.message, 'expected a map of keys, got a list');
});

test('YAML syntax errors carry line and column and stop there', T, () => {
  const errors = errorsOf(readFileSync(fixture('bad-syntax.txt'), 'utf8'));
  assert.equal(errors.length, 1);
  assert.deepEqual(errors[0], {
    path: '(root)',
    code: 'EYAML',
    message: 'YAML syntax error at line 4, column 1: Sequence item without - indicator',
  });
  const dup = errorsOf('log: { level: info }\nlog: { level: warn }\n');
  assert.match(dup[0]?.message ?? '', /^YAML syntax error at line 2, column 1: Map keys must be unique/);
});

test('YAML flow syntax traps get a hint', T, () => {
  const ipv6 = errorsOf('admin:\n  listen: [::1]:9090\n');
  assert.match(ipv6[0]?.message ?? '', /line 2, column \d+: .*\(quote IPv6 addresses: '\[::1\]:25'\)$/);
  // biome-ignore lint/suspicious/noTemplateCurlyInString: `${B}` is the config syntax under test
  const envInFlow = errorsOf('pools:\n  p:\n    static: [{ address: ${B}:25 }]\n');
  assert.match(
    envInFlow[0]?.message ?? '',
    /line 3, .*\(quote values with \$\{\.\.\.\} inside \{ \} or \[ \]\)$/,
  );
});

test('several mistakes are all reported, in file order', T, () => {
  const errors = errorsOf(readFileSync(fixture('bad-many.yaml'), 'utf8'));
  assert.deepEqual(
    errors.map((e) => `${e.path}: ${e.message}`),
    [
      'listeners[0].listen: expected host:port (IPv6 as [::1]:25), got "0.0.0.0:port25"',
      'listeners[0].pool: unknown pool "defualt" (defined: default)',
      'pools.default.static[0].wieght: unknown key (did you mean "weight"?)',
      'pools.default.timeouts.connect: expected a duration like 500ms, 30s, 5m or 1h, got "5 seconds"',
      'ledger.leaseTtl: environment variable LEASE_TTL_UNSET_FOR_TEST not set',
    ],
  );
});

test('bad shaping settings', T, () => {
  const errors = errorsOf(
    withBase(`shaping:
  allow: [10.0.0.0/33]
  limits: { action: drop, connectionRate: { limit: 5, window: 0 } }
  dnsbl:
    zones: [{ zone: bl.example, codes: ['127.0.0.[11..2]', 127.0.0] }]
    resolvers: [localhost]
  policy: { address: 127.0.0.1:10023, at: [mail] }
`),
  );
  assert.equal(errorAt(errors, 'shaping.allow[0]').message, 'prefix length must be 0-32, got "33"');
  assert.equal(
    errorAt(errors, 'shaping.limits.action').message,
    'expected one of reject, tarpit, got "drop"',
  );
  assert.equal(errorAt(errors, 'shaping.limits.connectionRate.window').message, 'must be at least 1s');
  assert.match(errorAt(errors, 'shaping.dnsbl.zones[0].codes[0]').message, /127\.0\.0\.\[2\.\.11\]/);
  assert.match(errorAt(errors, 'shaping.dnsbl.zones[0].codes[1]').message, /got "127\.0\.0"/);
  assert.match(errorAt(errors, 'shaping.dnsbl.resolvers[0]').message, /host:port/);
  assert.equal(errorAt(errors, 'shaping.policy.at[0]').message, 'expected one of rcpt, data, got "mail"');
});

test(
  'AUTH settings: only on submission and outbound listeners, only under TLS, with what the verifier needs',
  T,
  () => {
    const errors = errorsOf(`listeners:
  - name: mx
    listen: 127.0.0.1:25
    auth: { verify: file, file: /u }
  - name: sub
    listen: 127.0.0.1:587
    role: submission
  - name: out
    listen: 127.0.0.1:2525
    role: outbound
    auth: { verify: file }
  - name: api
    listen: 127.0.0.1:2526
    role: submission
    tls: { cert: /c, key: /k }
    auth: { verify: http, failures: { window: 10ms } }
  - name: bad
    listen: 127.0.0.1:2527
    role: relay
  - name: open
    listen: 0.0.0.0:2528
    role: outbound
    auth: { verify: backend, allowPlaintext: true }
pools:
  default:
    static: [{ address: 127.0.0.1:2600 }]
senders: { onExceed: ban, limits: { messages: { window: 1ms } } }
`);
    const at = (path: string) => errorAt(errors, path).message;
    assert.match(at('listeners[0].auth'), /never offered on an inbound listener/);
    assert.equal(at('listeners[1].auth'), 'a submission listener needs auth');
    assert.equal(at('listeners[2].auth.file'), 'verify: file needs file');
    assert.match(at('listeners[2].auth'), /only under TLS/);
    assert.equal(at('listeners[3].auth.http'), 'verify: http needs http.url');
    assert.equal(at('listeners[3].auth.failures.window'), 'must be at least 1s');
    assert.match(at('listeners[4].role'), /inbound.*submission.*outbound/);
    assert.match(at('senders.onExceed'), /reject.*suspend/);
    assert.equal(
      at('listeners[5].auth.allowPlaintext'),
      'only for a loopback listener (127.0.0.0/8, ::1, localhost), not 0.0.0.0',
    );
    assert.equal(at('senders.limits.messages.window'), 'must be at least 1s');
  },
);

test('clients: required on an outbound listener, refused on others', T, () => {
  const errors = errorsOf(`listeners:
  - { name: out, role: outbound, listen: 127.0.0.1:2525 }
  - { name: in, listen: 127.0.0.1:2526, clients: [10.0.0.0/8] }
  - { name: bad, role: outbound, listen: 127.0.0.1:2527, clients: [10.0.0.0/99] }
pools:
  default: { static: [{ address: 127.0.0.1:25 }] }
`);
  assert.equal(
    errorAt(errors, 'listeners[0].clients').message,
    'required on an outbound listener (no open relay)',
  );
  assert.equal(errorAt(errors, 'listeners[1].clients').message, 'only outbound listeners have clients');
  assert.ok(errorAt(errors, 'listeners[2].clients[0]'));
});

test('ledger: one Redis mode at a time, TLS only with Redis, cert and key together', T, () => {
  const both = errorsOf(
    withBase(`ledger:
  redis: redis://10.0.0.1:6379
  redisSentinel: { sentinels: [10.0.0.1:26379], masterName: m }
`),
  );
  assert.equal(
    errorAt(both, 'ledger.redisSentinel').message,
    'give one of redis, redisCluster, redisSentinel, not redis and redisSentinel',
  );
  const bad = errorsOf(
    withBase(`ledger:
  tls: { cert: c.pem }
`),
  );
  assert.equal(errorAt(bad, 'ledger.tls').message, 'needs redis, redisCluster or redisSentinel');
  assert.equal(errorAt(bad, 'ledger.tls.key').message, 'give cert and key together');
  const sentinel = errorsOf(
    withBase(`ledger:
  redisSentinel: { sentinels: [nowhere], db: -1 }
`),
  );
  assert.ok(errorAt(sentinel, 'ledger.redisSentinel.sentinels[0]'));
  assert.ok(errorAt(sentinel, 'ledger.redisSentinel.db'));
  const unnamed = errorsOf(withBase('ledger: { redisSentinel: { sentinels: [10.0.0.1:26379] } }\n'));
  assert.equal(errorAt(unnamed, 'ledger.redisSentinel.masterName').message, 'required');
});
