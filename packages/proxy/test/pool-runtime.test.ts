// A pool at run time forgets the passive-health penalty of a backend discovery removed: without it
// every backend that ever failed and left (Consul churn) stayed in memory for the life of the node,
// and one that came back under the same id started penalised.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '@smtp-lb/config';
import type { BackendSource, DiscoveredBackend } from '@smtp-lb/discovery';
import { PoolRuntime } from '../src/pool-runtime.js';

const backend = (id: string): DiscoveredBackend => {
  const [host, port] = id.split(':');
  return { id, host: host!, port: Number(port), weight: 1, maxConnections: 10 };
};

test('a backend that left the set has its penalty forgotten; the others keep theirs', () => {
  const parsed = parseConfig(`
listeners: [{ name: in, listen: 127.0.0.1:0, hostname: mx.test, pool: p }]
pools: { p: { static: [{ address: 127.0.0.1:2601 }] } }
`);
  assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
  let set = [backend('127.0.0.1:2601'), backend('127.0.0.1:2602')];
  // Discovery's side, as a Consul source behaves: a current set and a change listener.
  const listeners: Array<(b: readonly DiscoveredBackend[]) => void> = [];
  const source: BackendSource = {
    pool: 'p',
    ready: true,
    current: () => set,
    onChange: (l) => {
      listeners.push(l);
      return () => {};
    },
    close: async () => {},
  };
  const pool = new PoolRuntime('p', parsed.config.pools.p!, source, 'least-connections');
  source.onChange((b) => pool.backendsChanged(b));
  pool.health.penalize('127.0.0.1:2601');
  pool.health.penalize('127.0.0.1:2602');
  assert.equal(pool.health.factor('127.0.0.1:2601'), 0.5);

  set = [backend('127.0.0.1:2602')];
  for (const l of listeners) l(set);
  assert.equal(pool.health.factor('127.0.0.1:2601'), 1, 'the removed backend is forgotten');
  assert.equal(pool.health.factor('127.0.0.1:2602'), 0.5, 'a backend still in the set keeps its penalty');

  set = [backend('127.0.0.1:2601'), backend('127.0.0.1:2602')];
  for (const l of listeners) l(set);
  assert.equal(pool.health.factor('127.0.0.1:2601'), 1, 'it comes back at full weight');
});
