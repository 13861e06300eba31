// recipientMaps, routes by map and listener recipient verification: what resolves and what is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configOf, errorAt, errorsOf, withBase } from './helpers.js';

const T = { timeout: 5_000 };

test(
  'a file map gets the cache, delimiter and timeout defaults; its path is taken from the config folder',
  T,
  () => {
    const c = configOf(
      withBase(
        `recipientMaps:
  staff: { file: maps/staff.map }
routes:
  - { recipientMap: staff }
`,
        '    recipients: { map: staff }\n',
      ),
      { source: '/etc/smtp-lb/smtp-lb.yaml' },
    );
    assert.deepEqual(c.recipientMaps, {
      staff: {
        name: 'staff',
        file: '/etc/smtp-lb/maps/staff.map',
        cacheTtl: 60_000,
        negativeCacheTtl: 10_000,
        cacheSize: 100_000,
        recipientDelimiter: '+',
        timeout: 2000,
      },
    });
    assert.deepEqual(c.routes, [{ recipientMap: 'staff', pool: '' }]);
    assert.deepEqual(c.listeners[0]?.recipients, { map: 'staff', unknown: 'reject' });
  },
);

test(
  'a redis map uses the ledger Redis unless it names its own; an LDAP map resolves its TLS settings',
  T,
  () => {
    const c = configOf(
      withBase(`ledger: { redis: redis://127.0.0.1:6379/0 }
recipientMaps:
  keys: { redis: {} }
  hash: { redis: { hash: "rcpt", url: "redis://10.0.0.9:6380" }, cacheTtl: 0, recipientDelimiter: "" }
  dir:
    ldap:
      url: ldap://127.0.0.1:389
      base: ou=people,dc=example,dc=com
      filter: (&(objectClass=inetOrgPerson)(mail=%s))
      attribute: departmentNumber
      bindDn: cn=reader,dc=example,dc=com
      bindPassword: secret
      startTls: true
      ca: /etc/ca.pem
      connections: 4
    timeout: 500ms
`),
    );
    const maps = c.recipientMaps!;
    assert.deepEqual(maps.keys?.redis, { url: 'redis://127.0.0.1:6379/0', prefix: 'smtp-lb:rcpt:' });
    assert.deepEqual(maps.hash?.redis, {
      url: 'redis://10.0.0.9:6380',
      prefix: 'smtp-lb:rcpt:',
      hash: 'rcpt',
    });
    assert.equal(maps.hash?.cacheTtl, 0);
    assert.equal(maps.hash?.recipientDelimiter, '');
    assert.deepEqual(maps.dir?.ldap, {
      url: 'ldap://127.0.0.1:389',
      base: 'ou=people,dc=example,dc=com',
      filter: '(&(objectClass=inetOrgPerson)(mail=%s))',
      scope: 'sub',
      attribute: 'departmentNumber',
      bindDn: 'cn=reader,dc=example,dc=com',
      bindPassword: 'secret',
      ca: '/etc/ca.pem',
      startTls: true,
      verify: true,
      connections: 4,
    });
    assert.equal(maps.dir?.timeout, 500);
  },
);

test("a redis map takes the ledger's Sentinel and TLS, or its own connection and TLS", T, () => {
  const c = configOf(
    withBase(`ledger:
  redisSentinel: { sentinels: [127.0.0.1:26379, "127.0.0.2:26379"], masterName: mymaster, password: pw }
  tls: { ca: /etc/redis/ca.pem, servername: redis.internal }
recipientMaps:
  inherited: { redis: {} }
  ownTls: { redis: { tls: { ca: /etc/maps/ca.pem } } }
  ownSentinel:
    redis:
      sentinel: { sentinels: [10.0.0.5:26379], masterName: maps, db: 2 }
      tls: { ca: /etc/maps/ca.pem, cert: /etc/maps/c.pem, key: /etc/maps/k.pem }
  ownUrl: { redis: { url: "redis://10.0.0.9:6380" } }
  ownCluster: { redis: { cluster: ["redis://10.0.0.7:7000"], hash: h } }
`),
  );
  const maps = c.recipientMaps!;
  const ledgerSentinel = {
    sentinels: [
      { host: '127.0.0.1', port: 26379 },
      { host: '127.0.0.2', port: 26379 },
    ],
    masterName: 'mymaster',
    password: 'pw',
    db: 0,
  };
  assert.deepEqual(maps.inherited?.redis, {
    sentinel: ledgerSentinel,
    tls: { ca: '/etc/redis/ca.pem', servername: 'redis.internal' },
    prefix: 'smtp-lb:rcpt:',
  });
  assert.deepEqual(maps.ownTls?.redis, {
    sentinel: ledgerSentinel,
    tls: { ca: '/etc/maps/ca.pem' },
    prefix: 'smtp-lb:rcpt:',
  });
  assert.deepEqual(maps.ownSentinel?.redis, {
    sentinel: { sentinels: [{ host: '10.0.0.5', port: 26379 }], masterName: 'maps', db: 2 },
    tls: { ca: '/etc/maps/ca.pem', cert: '/etc/maps/c.pem', key: '/etc/maps/k.pem' },
    prefix: 'smtp-lb:rcpt:',
  });
  assert.deepEqual(maps.ownUrl?.redis, { url: 'redis://10.0.0.9:6380', prefix: 'smtp-lb:rcpt:' });
  assert.deepEqual(maps.ownCluster?.redis, {
    cluster: ['redis://10.0.0.7:7000'],
    prefix: 'smtp-lb:rcpt:',
    hash: 'h',
  });
});

test('a redis map with two connections, or a certificate without its key, is refused by path', T, () => {
  const errors = errorsOf(
    withBase(`recipientMaps:
  both:
    redis: { url: "redis://a:6379", sentinel: { sentinels: [127.0.0.1:26379], masterName: m } }
  halfTls: { redis: { url: "rediss://a:6379", tls: { cert: /c.pem } } }
`),
  );
  assert.match(
    errorAt(errors, 'recipientMaps.both.redis.sentinel').message,
    /give one of url, cluster, sentinel/,
  );
  assert.equal(errorAt(errors, 'recipientMaps.halfTls.redis.tls.key').message, 'give cert and key together');
});

test('map errors carry their paths', T, () => {
  const errors = errorsOf(
    withBase(
      `recipientMaps:
  none: { cacheTtl: 1m }
  two: { file: /a, redis: {} }
  ldapbad:
    ldap: { url: "http://x", base: dc=x, filter: "(mail=%x)", startTls: true, bindDn: cn=a }
  tls: { ldap: { url: "ldaps://x", base: dc=x, startTls: true } }
  noattr: { ldap: { url: "ldap://x", base: dc=x } }
routes:
  - { recipientMap: nosuch }
  - { recipientMap: noattr }
  - { recipientMap: noattr, pool: default }
`,
      '    recipients: { map: missing, unknown: maybe }\n',
    ),
  );
  assert.equal(errorAt(errors, 'recipientMaps.none').message, 'needs file, redis or ldap');
  assert.equal(
    errorAt(errors, 'recipientMaps.two').message,
    'set one of file, redis, ldap (got file, redis)',
  );
  assert.match(
    errorAt(errors, 'recipientMaps.two.redis.url').message,
    /required when the ledger has no Redis \(redis, redisCluster or redisSentinel\)/,
  );
  assert.match(errorAt(errors, 'recipientMaps.ldapbad.ldap.url').message, /ldap:\/\/ or ldaps:\/\//);
  assert.equal(
    errorAt(errors, 'recipientMaps.ldapbad.ldap.filter').message,
    'unknown expansion "%x" (use %s, %u, %d or %%)',
  );
  assert.equal(errorAt(errors, 'recipientMaps.ldapbad.ldap.bindPassword').code, 'EREQUIRED');
  assert.match(errorAt(errors, 'recipientMaps.tls.ldap.startTls').message, /ldaps:\/\/ is TLS already/);
  assert.equal(
    errorAt(errors, 'routes[0].recipientMap').message,
    'unknown recipient map "nosuch" (defined: none, two, ldapbad, tls, noattr)',
  );
  assert.match(errorAt(errors, 'routes[1].pool').message, /names no pool/);
  assert.ok(!errors.some((e) => e.path === 'routes[2].pool'), 'a fixed pool needs no attribute');
  assert.equal(errorAt(errors, 'listeners[0].recipients.map').code, 'EREF');
  assert.ok(errorAt(errors, 'listeners[0].recipients.unknown'));
});

test('a route without pool needs a recipient map; unknown keys in a map are refused', T, () => {
  const errors = errorsOf(
    withBase(`recipientMaps:
  m: { file: /m, ttl: 5m }
routes:
  - { recipientDomain: example.com }
`),
  );
  assert.equal(errorAt(errors, 'routes[0].pool').message, 'required (or recipientMap)');
  assert.ok(errors.some((e) => e.path.startsWith('recipientMaps.m')));
});
