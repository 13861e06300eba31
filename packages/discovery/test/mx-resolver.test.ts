// MX resolution against a real dnsmasq (preferences, implicit MX, null MX, CNAME, NXDOMAIN, caching
// by TTL, 100 MX records) and against a scripted server for what dnsmasq never sends (SERVFAIL,
// silence, CNAME loops, truncation, garbage, answers to another question).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Dnsmasq, type HostileDns, startDnsmasq, startHostileDns } from '@smtp-lb/testkit';
import type { Answer } from 'dns-packet';
import fc from 'fast-check';
import { DnsClient, MxResolver, orderMx } from '../src/index.js';

const T = { timeout: 30_000 };

function resolver(
  address: { host: string; port: number },
  over: Partial<ConstructorParameters<typeof MxResolver>[0]> = {},
) {
  return new MxResolver({
    servers: [address],
    timeout: 500,
    maxHosts: 10,
    maxTtl: 3_600_000,
    random: () => 0.5,
    ...over,
  });
}

describe('MX resolution with dnsmasq', () => {
  let dns: Dnsmasq;
  const hundred = Array.from({ length: 100 }, (_, i) => ({ host: `mx${i}.many.test`, preference: 100 - i }));
  before(async () => {
    dns = await startDnsmasq({
      local: ['test'],
      ttl: 2,
      mx: {
        'a.test': [
          { host: 'mx2.a.test', preference: 20 },
          { host: 'mx1.a.test', preference: 10 },
          { host: 'mx3.a.test', preference: 30 },
        ],
        'null.test': 'null',
        'alias-mx.test': [{ host: 'alias.test', preference: 5 }],
        'noaddr.test': [{ host: 'missing.noaddr.test', preference: 10 }],
        'many.test': hundred,
      },
      hosts: {
        'mx1.a.test': ['127.0.0.2', '::1'],
        'mx2.a.test': ['127.0.0.3'],
        'mx3.a.test': ['127.0.0.4'],
        'plain.test': ['127.0.0.5'],
        'target.test': ['127.0.0.6'],
        ...Object.fromEntries(hundred.map((m, i) => [m.host, [`127.0.1.${i + 1}`]])),
      },
      cnames: { 'alias.test': 'target.test' },
    });
  });
  after(() => dns?.stop());

  test('MX hosts by preference, A before AAAA of each', T, async () => {
    const r = await resolver(dns).lookup('A.Test.');
    assert.equal(r.kind, 'hosts');
    assert.ok(r.kind === 'hosts');
    assert.deepEqual(
      r.addresses.map((a) => [a.host, a.preference, a.address]),
      [
        ['mx1.a.test', 10, '127.0.0.2'],
        ['mx1.a.test', 10, '::1'],
        ['mx2.a.test', 20, '127.0.0.3'],
        ['mx3.a.test', 30, '127.0.0.4'],
      ],
    );
    assert.equal(r.implicit, false);
  });

  test('a domain without MX is its own MX (RFC 5321 5.1)', T, async () => {
    const r = await resolver(dns).lookup('plain.test');
    assert.deepEqual(r, {
      kind: 'hosts',
      addresses: [{ host: 'plain.test', preference: 0, address: '127.0.0.5' }],
      implicit: true,
      ttl: 2,
    });
  });

  test('null MX, NXDOMAIN and an MX host without address are told apart', T, async () => {
    const res = resolver(dns);
    assert.equal((await res.lookup('null.test')).kind, 'null-mx');
    assert.equal((await res.lookup('nowhere.test')).kind, 'no-domain');
    assert.equal((await res.lookup('noaddr.test')).kind, 'no-address');
  });

  test('an MX host that is a CNAME is followed', T, async () => {
    const r = await resolver(dns).lookup('alias-mx.test');
    assert.ok(r.kind === 'hosts', r.kind);
    assert.deepEqual(
      r.addresses.map((a) => a.address),
      ['127.0.0.6'],
    );
  });

  test('100 MX records: the first maxHosts by preference, and no more queries than needed', T, async () => {
    const before = dns.queriesOf('A').length;
    const r = await resolver(dns, { maxHosts: 3 }).lookup('many.test');
    assert.ok(r.kind === 'hosts', r.kind);
    assert.deepEqual(
      r.addresses.map((a) => a.host),
      ['mx99.many.test', 'mx98.many.test', 'mx97.many.test'],
    );
    assert.ok(dns.queriesOf('A').length - before <= 3);
  });

  test('answers are cached for their TTL, then asked again', T, async () => {
    const res = resolver(dns);
    const count = () => dns.queriesOf('MX').filter((n) => n === 'a.test').length;
    await res.lookup('a.test');
    const first = count();
    await Promise.all([res.lookup('a.test'), res.lookup('a.test')]);
    assert.equal(count(), first, 'within the TTL nothing is asked');
    await new Promise((r) => setTimeout(r, 2_300));
    await res.lookup('a.test');
    assert.equal(count(), first + 1, 'after the TTL the answer is asked again');
  });

  test('concurrent lookups of one domain share one query', T, async () => {
    const res = resolver(dns);
    const count = () => dns.queriesOf('MX').filter((n) => n === 'null.test').length;
    const before = count();
    await Promise.all(Array.from({ length: 20 }, () => res.lookup('null.test')));
    assert.equal(count(), before + 1);
  });
});

describe('MX resolution against broken DNS', () => {
  let dns: HostileDns;
  const mx = (name: string, exchange: string, preference = 10): Answer => ({
    type: 'MX',
    name,
    ttl: 60,
    data: { preference, exchange },
  });
  const a = (name: string, address: string): Answer => ({ type: 'A', name, ttl: 60, data: address });
  before(async () => {
    dns = await startHostileDns((q) => {
      const n = q.name.toLowerCase();
      if (n === 'servfail.test') return { rcode: 2 };
      if (n === 'refused.test') return { rcode: 5 };
      if (n === 'silent.test') return 'drop';
      if (n === 'garbage.test') return Buffer.from('not a dns packet at all');
      if (n === 'loop1.test' || n === 'loop2.test')
        return {
          answers: [
            { type: 'CNAME', name: n, ttl: 60, data: n === 'loop1.test' ? 'loop2.test' : 'loop1.test' },
          ],
        };
      if (n === 'chain.test')
        return {
          answers: Array.from({ length: 12 }, (_, i) => ({
            type: 'CNAME' as const,
            name: i === 0 ? 'chain.test' : `c${i}.chain.test`,
            ttl: 60,
            data: `c${i + 1}.chain.test`,
          })),
        };
      if (n === 'big.test' && q.type === 'MX')
        return {
          truncate: true,
          answers: Array.from({ length: 100 }, (_, i) => mx(n, `mx${i}.big.test`, i)),
        };
      if (n.endsWith('.big.test') && q.type === 'A') return { answers: [a(n, '127.0.2.1')] };
      if (n === 'wrongname.test') return { answers: [mx('other.test', 'mx.other.test')] };
      if (n === 'mxdown.test' && q.type === 'MX') return { answers: [mx(n, 'mx.silent.test')] };
      if (n === 'mx.silent.test') return 'drop';
      return { rcode: 3 };
    });
  });
  after(() => dns?.stop());

  for (const [domain, reason] of [
    ['servfail.test', 'servfail'],
    ['refused.test', 'refused'],
    ['silent.test', 'timeout'],
    ['garbage.test', 'timeout'],
    ['loop1.test', 'cname-loop'],
    ['chain.test', 'cname-loop'],
    ['mxdown.test', 'timeout'],
  ] as const) {
    test(`${domain}: a ${reason} error, not cached`, T, async () => {
      const res = resolver(dns, { timeout: 200 });
      const r = await res.lookup(domain);
      assert.equal(r.kind, 'error');
      assert.ok(r.kind === 'error');
      assert.equal(r.reason, reason, r.detail);
      const asked = dns.questions.length;
      await res.lookup(domain);
      assert.ok(dns.questions.length > asked, 'a failure is asked again');
    });
  }

  test('a truncated UDP answer is asked again over TCP', T, async () => {
    const r = await resolver(dns, { maxHosts: 2 }).lookup('big.test');
    assert.ok(r.kind === 'hosts', r.kind);
    assert.deepEqual(
      r.addresses.map((x) => x.host),
      ['mx0.big.test', 'mx1.big.test'],
    );
    assert.ok(dns.questions.some((q) => q.name === 'big.test' && q.transport === 'tcp'));
  });

  test('records about another name than the question are not taken', T, async () => {
    const r = await resolver(dns).lookup('wrongname.test');
    assert.equal(r.kind, 'no-address', JSON.stringify(r));
  });

  test('the second server is asked when the first fails', T, async () => {
    const good = await startHostileDns((q) => (q.type === 'A' ? { answers: [a(q.name, '127.0.0.9')] } : {}));
    try {
      const res = new MxResolver({ servers: [dns, good], timeout: 300, maxHosts: 5, maxTtl: 1000 });
      const r = await res.lookup('servfail.test');
      assert.ok(r.kind === 'hosts', JSON.stringify(r));
    } finally {
      await good.stop();
    }
  });
});

describe('DNS answers as bytes', () => {
  test('random bytes from the server are dropped: no throw, no records, the query times out', T, async () => {
    let payload = Buffer.alloc(0);
    const dns = await startHostileDns(() => payload);
    try {
      const client = new DnsClient({ servers: [dns], timeout: 50 });
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 600 }), async (bytes) => {
          payload = Buffer.from(bytes);
          const r = await client.query('x.test', 'MX');
          // The id is random: random bytes cannot be an answer to our question.
          assert.ok(!r.ok && r.error === 'timeout', JSON.stringify(r));
        }),
        { seed: 14, numRuns: 40, interruptAfterTimeLimit: 10_000 },
      );
    } finally {
      await dns.stop();
    }
  });

  test('orderMx: sorted by preference, no duplicates, null MX only when alone', T, () => {
    const record = fc.record({
      exchange: fc.oneof(fc.constantFrom('.', '', 'a.test', 'B.test.', 'c.test'), fc.domain()),
      preference: fc.integer({ min: 0, max: 65535 }),
    });
    fc.assert(
      fc.property(fc.array(record, { maxLength: 30 }), fc.integer(), (recs, seed) => {
        let s = seed;
        const random = () => {
          s = (s * 1103515245 + 12345) & 0x7fffffff;
          return s / 0x7fffffff;
        };
        const out = orderMx(
          recs.map((d) => ({ type: 'MX', name: 'd.test', ttl: 1, data: d })),
          random,
        );
        const real = recs.filter((r) => r.exchange !== '.' && r.exchange !== '');
        if (out === 'null') {
          assert.ok(recs.length > 0 && real.length === 0);
          return;
        }
        assert.equal(out.length, new Set(real.map((r) => r.exchange.toLowerCase().replace(/\.$/, ''))).size);
        for (let i = 1; i < out.length; i++) assert.ok(out[i - 1]!.preference <= out[i]!.preference);
        assert.equal(new Set(out.map((o) => o.host)).size, out.length);
      }),
      { seed: 14, numRuns: 500 },
    );
  });
});
