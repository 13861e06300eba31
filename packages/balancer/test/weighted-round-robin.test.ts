import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import { createPolicy } from '../src/create-policy.js';
import type { BalancingPolicy, Candidate } from '../src/types.js';
import { assertShares, simulate } from './helpers/simulate.js';

const sequence = (p: BalancingPolicy, candidates: readonly Candidate[], n: number): string =>
  Array.from({ length: n }, () => p.pick(candidates)?.id).join(' ');

describe('weighted-round-robin (smooth)', () => {
  it('gives nginx documented sequence for weights 5, 1, 1', () => {
    const p = createPolicy('weighted-round-robin');
    const set = [
      { id: 'a', weight: 5, count: 0 },
      { id: 'b', weight: 1, count: 0 },
      { id: 'c', weight: 1, count: 0 },
    ];
    assert.equal(sequence(p, set, 7), 'a a b a c a a');
    assert.equal(sequence(p, set, 7), 'a a b a c a a', 'the cycle repeats');
  });

  it('ignores connection counts', () => {
    const p = createPolicy('weighted-round-robin');
    const set = [
      { id: 'a', weight: 1, count: 1000 },
      { id: 'b', weight: 1, count: 0 },
    ];
    assert.equal(sequence(p, set, 4), 'a b a b');
  });

  it('forgets ids that vanish and starts new or returning ids at 0', () => {
    const p = createPolicy('weighted-round-robin');
    const a = { id: 'a', weight: 1, count: 0 };
    const b = { id: 'b', weight: 2, count: 0 };
    const c = { id: 'c', weight: 1, count: 0 };
    // a:1 b:2 -> b (b -1); a:2 b:1 -> a (a -1).
    assert.equal(sequence(p, [a, b], 2), 'b a');
    // b vanishes; c is new at 0: a:0 c:1 -> c (c -1); then a:1 c:0 -> a (a -1).
    assert.equal(sequence(p, [a, c], 2), 'c a');
    // b returns at 0, not with its old debt of -1 (which would have made it lose the first round).
    // a:0 c:1 b:2 -> b (b -2); a:1 c:2 b:0 -> c (c -2); a:2 c:-1 b:2 -> a (first of the tie).
    assert.equal(sequence(p, [a, c, b], 3), 'b c a');
  });

  it('returns undefined for an empty set, then carries on with a new set', () => {
    const p = createPolicy('weighted-round-robin');
    assert.equal(p.pick([]), undefined);
    assert.equal(p.pick([{ id: 'x', weight: 1, count: 0 }])?.id, 'x');
  });

  it('simulation: shares of 100 000 picks follow the weights 5/3/2 (within 1 %)', () => {
    const rng = mulberry32(11);
    const shares = simulate(
      createPolicy('weighted-round-robin'),
      [
        { id: 'a', weight: 5 },
        { id: 'b', weight: 3 },
        { id: 'c', weight: 2 },
      ],
      rng,
    );
    assertShares(shares, { a: 0.5, b: 0.3, c: 0.2 });
  });
});
