// The Consul source against a real agent: every test watches its own service name.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type ConsulAgent, startConsul } from '@smtp-lb/testkit';
import { ConsulSource, type ConsulSourceOptions } from '../src/index.js';
import { ids, memoryLogger, nextSet } from './watch.js';

let consul: ConsulAgent;
const sources: ConsulSource[] = [];

before(async () => {
  consul = await startConsul();
});

after(async () => {
  await Promise.all(sources.map((s) => s.close()));
  await consul.stop();
});

function watch(service: string, over: Partial<ConsulSourceOptions> = {}): ConsulSource {
  const source = new ConsulSource({
    pool: service,
    service,
    consul: { address: consul.address },
    defaultMaxConnections: 100,
    ...over,
  });
  sources.push(source);
  return source;
}

const mta = (service: string, n: number, over: Partial<Parameters<ConsulAgent['register']>[0]> = {}) => ({
  id: `${service}-${n}`,
  name: service,
  address: `127.0.0.${n}`,
  port: 2525,
  tags: ['smtp'],
  ...over,
});

test('two instances with weights 3 and 1 appear with those weights, caps and options from meta', {
  timeout: 20_000,
}, async () => {
  const log = memoryLogger();
  await consul.register(
    mta('weights', 1, {
      weights: { passing: 3, warning: 1 },
      meta: { 'smtp-lb-max-connections': '25', 'smtp-lb-xclient': 'off', 'smtp-lb-tls': 'required' },
    }),
  );
  await consul.register(
    mta('weights', 2, { weights: { passing: 1, warning: 1 }, meta: { 'smtp-lb-proxy-protocol': 'v9' } }),
  );
  // Same service without the tag: a pool that asks for `smtp` must not see it.
  await consul.register(mta('weights', 3, { tags: ['other'] }));
  const source = watch('weights', { tag: 'smtp', logger: log });
  assert.equal(source.ready, false);
  const { backends } = await nextSet(source, (b) => b.length === 2);
  assert.equal(source.ready, true);
  assert.deepEqual(backends, [
    {
      id: '127.0.0.1:2525',
      host: '127.0.0.1',
      port: 2525,
      weight: 3,
      maxConnections: 25,
      xclient: 'off',
      tls: 'required',
    },
    { id: '127.0.0.2:2525', host: '127.0.0.2', port: 2525, weight: 1, maxConnections: 100 },
  ]);
  const bad = log.lines.filter((l) => l.level === 'warn' && l.msg.includes('meta ignored'));
  assert.equal(bad.length, 1);
  assert.deepEqual(bad[0]?.obj, {
    pool: 'weights',
    service: 'weights',
    serviceId: 'weights-2',
    key: 'smtp-lb-proxy-protocol',
    value: 'v9',
  });
});

test('maintenance mode removes an instance within 1 s and ending it brings it back', {
  timeout: 20_000,
}, async (t) => {
  await consul.register(mta('maint', 1));
  await consul.register(mta('maint', 2));
  const source = watch('maint');
  await nextSet(source, (b) => b.length === 2);
  const gone = nextSet(source, (b) => !ids(b).includes('127.0.0.1:2525'));
  const t0 = performance.now();
  await consul.maintenance('maint-1', true);
  const { backends, at } = await gone;
  const ms = at - t0;
  t.diagnostic(`maintenance on -> onChange: ${ms.toFixed(1)} ms`);
  assert.ok(ms < 1000, `took ${ms} ms`);
  assert.deepEqual(ids(backends), ['127.0.0.2:2525']);
  assert.deepEqual(ids(source.current()), ['127.0.0.2:2525']);
  const back = nextSet(source, (b) => b.length === 2);
  await consul.maintenance('maint-1', false);
  await back;
});

test('a failing TTL check removes an instance within 1 s; passing again restores it', {
  timeout: 20_000,
}, async (t) => {
  await consul.register(mta('ttl', 1));
  await consul.register(mta('ttl', 2));
  const source = watch('ttl');
  await nextSet(source, (b) => b.length === 2);
  const figures: number[] = [];
  for (let round = 0; round < 3; round++) {
    // Let the source settle into its blocking query (the maintenance test covers a change that lands
    // inside the 50 ms rate-limit window after an answer).
    await new Promise((r) => setTimeout(r, 200));
    const gone = nextSet(source, (b) => ids(b).join() === '127.0.0.2:2525');
    const t0 = performance.now();
    await consul.failCheck('ttl-1');
    figures.push((await gone).at - t0);
    const back = nextSet(source, (b) => b.length === 2);
    await consul.passCheck('ttl-1');
    await back;
  }
  t.diagnostic(`check critical -> onChange: ${figures.map((ms) => ms.toFixed(1)).join(', ')} ms`);
  for (const ms of figures) assert.ok(ms < 1000, `took ${ms} ms`);
});

test('weight and meta changes arrive without restarting anything', { timeout: 20_000 }, async () => {
  await consul.register(mta('change', 1, { weights: { passing: 2, warning: 1 } }));
  const source = watch('change');
  await nextSet(source, (b) => b[0]?.weight === 2);
  const changed = nextSet(source, (b) => b[0]?.weight === 5);
  await consul.register(
    mta('change', 1, {
      weights: { passing: 5, warning: 1 },
      meta: { 'smtp-lb-max-connections': '7', 'smtp-lb-tls': 'none' },
    }),
  );
  const { backends } = await changed;
  assert.deepEqual(backends, [
    { id: '127.0.0.1:2525', host: '127.0.0.1', port: 2525, weight: 5, maxConnections: 7, tls: 'none' },
  ]);
});

test('onChange stays silent when Consul answers but the backend set is the same', {
  timeout: 20_000,
}, async () => {
  await consul.register(mta('same', 1));
  const source = watch('same');
  await nextSet(source, (b) => b.length === 1);
  let calls = 0;
  source.onChange(() => {
    calls += 1;
  });
  // A new check output changes the health answer (and wakes blocking queries) but not the backends.
  const before = await fetch(`${consul.address}/v1/health/service/same?passing=true`);
  const index = before.headers.get('x-consul-index');
  await consul.passCheck('same-1', 'still fine');
  const woke = await fetch(`${consul.address}/v1/health/service/same?passing=true&index=${index}&wait=5s`);
  assert.notEqual(woke.headers.get('x-consul-index'), index, 'consul did answer with a new index');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(calls, 0);
  // The listener does fire for a real change.
  const grown = nextSet(source, (b) => b.length === 2);
  await consul.register(mta('same', 2));
  await grown;
  assert.equal(calls, 1);
});

test('deregistering an instance removes it', { timeout: 20_000 }, async () => {
  await consul.register(mta('dereg', 1));
  await consul.register(mta('dereg', 2));
  const source = watch('dereg');
  await nextSet(source, (b) => b.length === 2);
  const gone = nextSet(source, (b) => ids(b).join() === '127.0.0.1:2525');
  await consul.deregister('dereg-2');
  await gone;
});

test('close() ends a pending blocking query at once', { timeout: 20_000 }, async () => {
  await consul.register(mta('close', 1));
  const source = new ConsulSource({
    pool: 'close',
    service: 'close',
    consul: { address: consul.address },
    defaultMaxConnections: 100,
    waitMs: 60_000,
  });
  await nextSet(source, (b) => b.length === 1);
  // Let the source settle into its blocking query.
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  await source.close();
  assert.ok(performance.now() - t0 < 500, 'close waited for the blocking query');
});
