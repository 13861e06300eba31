import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecipientMap } from '@smtp-lb/discovery';
import { domainOf, Router } from '../src/router.js';

const inbound = { name: 'inbound', pool: 'default' };

async function pool(r: Router, listener: typeof inbound, sender: string, recipient: string) {
  const d = await r.route(listener, sender, recipient);
  return 'pool' in d ? d.pool : `failed: ${d.failed.map}: ${d.failed.reason}`;
}
const outbound = { name: 'outbound', pool: 'relay' };

test('first matching route wins, otherwise the listener pool', async () => {
  const r = new Router([
    { recipientDomain: 'sales.example.com', pool: 'sales' },
    { recipientDomain: '*.example.com', pool: 'departments' },
    { recipientDomain: 'sales.example.com', pool: 'never' },
  ]);
  assert.equal(await pool(r, inbound, 'a@x.org', 'bob@sales.example.com'), 'sales');
  assert.equal(
    await pool(r, inbound, 'a@x.org', 'bob@SALES.Example.COM'),
    'sales',
    'domains compare case-insensitively',
  );
  assert.equal(await pool(r, inbound, 'a@x.org', 'bob@hr.example.com'), 'departments');
  assert.equal(
    await pool(r, inbound, 'a@x.org', 'bob@example.com'),
    'default',
    '*.example.com is subdomains only',
  );
  assert.equal(await pool(r, inbound, 'a@x.org', 'bob@notexample.com'), 'default');
});

test('sender domain and listener conditions must all hold', async () => {
  const r = new Router([
    { senderDomain: 'partner.test', recipientDomain: 'example.com', pool: 'partners' },
    { listener: 'outbound', pool: 'smarthost' },
  ]);
  assert.equal(await pool(r, inbound, 'p@partner.test', 'x@example.com'), 'partners');
  assert.equal(await pool(r, inbound, 'p@other.test', 'x@example.com'), 'default');
  assert.equal(await pool(r, outbound, 'p@other.test', 'x@example.com'), 'smarthost');
  assert.equal(await pool(r, outbound, '', 'x@anything.test'), 'smarthost', 'the null sender routes too');
});

test('domainOf takes the part after the last @', () => {
  assert.equal(domainOf('"a@b"@Example.ORG'), 'example.org');
  assert.equal(domainOf(''), '');
  assert.equal(domainOf('postmaster'), '');
});

test('a recipient map route: the map names the pool, or the route does; unknown falls through; a failure is no route', async () => {
  const entries: Record<string, string> = {
    'alice@example.com': 'sales',
    'bob@example.com': '',
    '@eng.example.com': 'eng',
  };
  let down = false;
  const staff = new RecipientMap({
    name: 'staff',
    driver: {
      kind: 'file',
      async lookup(keys) {
        if (down) throw new Error('directory unreachable');
        for (const key of keys) if (entries[key] !== undefined) return { key, value: entries[key]! };
        return undefined;
      },
      state: () => ({ up: true }),
      async close() {},
    },
    cacheTtlMs: 0,
    negativeCacheTtlMs: 0,
    cacheSize: 0,
    recipientDelimiter: '+',
    timeoutMs: 1000,
  });
  const maps: Record<string, RecipientMap> = { staff };
  const r = new Router(
    [
      { recipientDomain: 'partner.example', recipientMap: 'staff', pool: 'partners' },
      { recipientMap: 'staff', pool: '' },
      { recipientDomain: '*.example.com', pool: 'departments' },
    ],
    (name) => maps[name],
  );
  assert.equal(await pool(r, inbound, 'a@x.org', 'Alice+news@example.com'), 'sales');
  assert.equal(await pool(r, inbound, 'a@x.org', 'carol@eng.example.com'), 'eng');
  assert.equal(
    await pool(r, inbound, 'a@x.org', 'bob@example.com'),
    'default',
    'a known recipient without a value',
  );
  assert.equal(
    await pool(r, inbound, 'a@x.org', 'zed@hr.example.com'),
    'departments',
    'unknown falls through',
  );
  assert.equal(await pool(r, inbound, 'a@x.org', 'zed@example.com'), 'default');
  down = true;
  assert.equal(
    await pool(r, inbound, 'a@x.org', 'alice@example.com'),
    'failed: staff: directory unreachable',
  );
  assert.equal(await pool(r, inbound, 'a@x.org', 'x@other.test'), 'failed: staff: directory unreachable');
  const unloaded = new Router([{ recipientMap: 'gone', pool: '' }]);
  assert.equal(await pool(unloaded, inbound, '', 'a@b.c'), 'failed: gone: recipient map not loaded');
});
