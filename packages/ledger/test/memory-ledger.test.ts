import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LedgerError } from '../src/errors.js';
import { MemoryLedger } from '../src/memory-ledger.js';

describe('MemoryLedger', () => {
  it('grants up to the cap and no more, per backend', async () => {
    const l = new MemoryLedger();
    assert.equal(l.mode, 'memory');
    const leases = await Promise.all([1, 2, 3].map(() => l.tryAcquire('a:25', 2)));
    assert.equal(leases.filter(Boolean).length, 2);
    assert.equal(l.count('a:25'), 2);
    assert.equal(l.nodeCount('a:25'), 2);
    assert.ok(await l.tryAcquire('b:25', 1), 'another backend has its own count');
    assert.equal(await l.tryAcquire('c:25', 0), undefined, 'cap 0 grants nothing');
  });

  it('release frees the slot once, however often it is called, and tells listeners', async () => {
    const l = new MemoryLedger();
    const heard: string[] = [];
    const off = l.onRelease((id) => heard.push(id));
    const lease = await l.tryAcquire('a:25', 1);
    assert.ok(lease);
    assert.equal(await l.tryAcquire('a:25', 1), undefined);
    lease.release();
    lease.release();
    assert.equal(l.count('a:25'), 0);
    assert.deepEqual(heard, ['a:25']);
    const again = await l.tryAcquire('a:25', 1);
    assert.ok(again);
    assert.equal(await l.tryAcquire('a:25', 1), undefined, 'the double release did not free a second slot');
    off();
    again.release();
    assert.deepEqual(heard, ['a:25'], 'an unsubscribed listener hears nothing');
  });

  it('rejects a cap that is not a non-negative integer with a typed error', async () => {
    const l = new MemoryLedger();
    await assert.rejects(
      l.tryAcquire('a:25', Number.NaN),
      (e: unknown) => e instanceof LedgerError && e.code === 'LEDGER_BAD_ARGUMENT',
    );
    await assert.rejects(l.tryAcquire('a:25', -1), LedgerError);
  });
});
