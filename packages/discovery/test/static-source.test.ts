import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PoolConfig } from '@smtp-lb/config';
import { createSource, DiscoveryError, StaticSource } from '../src/index.js';

test('a static pool is ready at once with the configured backends, weights, caps and overrides', async () => {
  const source = new StaticSource('default', [
    {
      address: { host: '10.1.0.5', port: 25 },
      weight: 2,
      maxConnections: 200,
      xclient: 'off',
      tls: 'required',
    },
    { address: { host: '::1', port: 2525 }, weight: 1, maxConnections: 100 },
  ]);
  assert.equal(source.ready, true);
  assert.equal(source.stale, false);
  assert.deepEqual(source.current(), [
    {
      id: '10.1.0.5:25',
      host: '10.1.0.5',
      port: 25,
      weight: 2,
      maxConnections: 200,
      xclient: 'off',
      tls: 'required',
    },
    { id: '[::1]:2525', host: '::1', port: 2525, weight: 1, maxConnections: 100 },
  ]);
  await source.close();
});

const pool = (over: Partial<PoolConfig>): PoolConfig => ({
  name: 'sales',
  xclient: 'auto',
  proxyProtocol: 'off',
  tls: { mode: 'opportunistic', verify: true },
  timeouts: { connect: 1000, greeting: 1000, command: 1000, dataStart: 1000, dataDone: 1000 },
  connectRetries: 1,
  ...over,
});

test('createSource picks the static source for a static pool', async () => {
  const source = createSource(
    pool({ static: [{ address: { host: '127.0.0.1', port: 25 }, weight: 1, maxConnections: 5 }] }),
    undefined,
    { defaultMaxConnections: 100 },
  );
  assert.ok(source instanceof StaticSource);
  assert.deepEqual(
    source.current().map((b) => b.id),
    ['127.0.0.1:25'],
  );
  await source.close();
});

test('createSource refuses a consul pool without a consul agent, and a pool with no source', () => {
  assert.throws(
    () => createSource(pool({ consul: { service: 'mta' } }), undefined, { defaultMaxConnections: 100 }),
    (err: unknown) => err instanceof DiscoveryError && err.code === 'DISCOVERY_NO_CONSUL',
  );
  assert.throws(
    () => createSource(pool({}), { address: 'http://127.0.0.1:8500' }, { defaultMaxConnections: 100 }),
    (err: unknown) => err instanceof DiscoveryError && err.code === 'DISCOVERY_NO_SOURCE',
  );
  assert.throws(
    () =>
      createSource(
        pool({ consul: { service: 'mta' } }),
        { address: 'https://127.0.0.1:8501', ca: '/nonexistent/ca.pem' },
        {
          defaultMaxConnections: 100,
        },
      ),
    (err: unknown) => err instanceof DiscoveryError && err.code === 'DISCOVERY_CA_UNREADABLE',
  );
});
