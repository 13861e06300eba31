import assert from 'node:assert/strict';
import { test } from 'node:test';
import { domainOf, Router } from '../src/router.js';

const inbound = { name: 'inbound', pool: 'default' };
const outbound = { name: 'outbound', pool: 'relay' };

test('first matching route wins, otherwise the listener pool', () => {
  const r = new Router([
    { recipientDomain: 'sales.example.com', pool: 'sales' },
    { recipientDomain: '*.example.com', pool: 'departments' },
    { recipientDomain: 'sales.example.com', pool: 'never' },
  ]);
  assert.equal(r.pool(inbound, 'a@x.org', 'bob@sales.example.com'), 'sales');
  assert.equal(
    r.pool(inbound, 'a@x.org', 'bob@SALES.Example.COM'),
    'sales',
    'domains compare case-insensitively',
  );
  assert.equal(r.pool(inbound, 'a@x.org', 'bob@hr.example.com'), 'departments');
  assert.equal(r.pool(inbound, 'a@x.org', 'bob@example.com'), 'default', '*.example.com is subdomains only');
  assert.equal(r.pool(inbound, 'a@x.org', 'bob@notexample.com'), 'default');
});

test('sender domain and listener conditions must all hold', () => {
  const r = new Router([
    { senderDomain: 'partner.test', recipientDomain: 'example.com', pool: 'partners' },
    { listener: 'outbound', pool: 'smarthost' },
  ]);
  assert.equal(r.pool(inbound, 'p@partner.test', 'x@example.com'), 'partners');
  assert.equal(r.pool(inbound, 'p@other.test', 'x@example.com'), 'default');
  assert.equal(r.pool(outbound, 'p@other.test', 'x@example.com'), 'smarthost');
  assert.equal(r.pool(outbound, '', 'x@anything.test'), 'smarthost', 'the null sender routes too');
});

test('domainOf takes the part after the last @', () => {
  assert.equal(domainOf('"a@b"@Example.ORG'), 'example.org');
  assert.equal(domainOf(''), '');
  assert.equal(domainOf('postmaster'), '');
});
