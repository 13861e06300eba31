import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SlotWaiters } from '../src/slot-waiters.js';

test('a release wakes the longest-waiting session that can use that backend, one at a time', async () => {
  const w = new SlotWaiters();
  const order: string[] = [];
  const a = w.wait(new Set(['b1']), 5000).then((r) => order.push(`a:${r}`));
  const b = w.wait(new Set(['b1', 'b2']), 5000).then((r) => order.push(`b:${r}`));
  const c = w.wait(new Set(['b2']), 5000).then((r) => order.push(`c:${r}`));
  assert.equal(w.size, 3);
  w.release('b2'); // b is first in line for b2
  await b;
  assert.deepEqual(order, ['b:woken']);
  w.release('b1');
  await a;
  w.release('b2');
  await c;
  assert.deepEqual(order, ['b:woken', 'a:woken', 'c:woken']);
  assert.equal(w.size, 0);
});

test('waiting ends at the timeout or on abort, and leaves the queue', async () => {
  const w = new SlotWaiters();
  const ac = new AbortController();
  const t = w.wait(new Set(['x']), 30);
  const a = w.wait(new Set(['x']), 5000, ac.signal);
  ac.abort();
  assert.equal(await a, 'aborted');
  assert.equal(await t, 'timeout');
  assert.equal(w.size, 0);
  w.release('x'); // nobody left: nothing happens
});

test('wakeAll lets everyone look again', async () => {
  const w = new SlotWaiters();
  const all = [w.wait(new Set(['a']), 5000), w.wait(new Set(['b']), 5000)];
  w.wakeAll();
  assert.deepEqual(await Promise.all(all), ['woken', 'woken']);
});
