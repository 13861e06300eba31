import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import { createPolicy } from '../src/create-policy.js';
import { assertShares, countPicks, simulate } from './helpers/simulate.js';

describe('weighted-least-connections', () => {
  it('ranks busy backends by (count + 1) / weight', () => {
    const p = createPolicy('weighted-least-connections', { random: mulberry32(1) });
    // a: 6/3 = 2, b: 2/1 = 2, c: 3/2 = 1.5
    const pick = p.pick([
      { id: 'a', weight: 3, count: 5 },
      { id: 'b', weight: 1, count: 1 },
      { id: 'c', weight: 2, count: 2 },
    ]);
    assert.equal(pick?.id, 'c');
  });

  it('prefers an idle backend over a busy one, even a much heavier one (HAProxy key 0)', () => {
    const p = createPolicy('weighted-least-connections', { random: mulberry32(1) });
    const pick = p.pick([
      { id: 'heavy', weight: 100, count: 1 },
      { id: 'idle', weight: 1, count: 0 },
    ]);
    assert.equal(pick?.id, 'idle');
  });

  it('breaks ties at random: a seeded source gives both tied backends', () => {
    const p = createPolicy('weighted-least-connections', { random: mulberry32(3) });
    // (5 + 1) / 3 = 2 and (1 + 1) / 1 = 2: an exact tie, not a float near-miss.
    const seen = countPicks(
      p,
      [
        { id: 'a', weight: 3, count: 5 },
        { id: 'b', weight: 1, count: 1 },
        { id: 'worse', weight: 1, count: 2 },
      ],
      2000,
    );
    assert.equal(seen.get('worse'), undefined);
    for (const id of ['a', 'b']) {
      const n = seen.get(id) ?? 0;
      assert.ok(n > 850 && n < 1150, `${id} picked ${n} of 2000 times`);
    }
  });

  it('returns undefined for an empty set', () => {
    assert.equal(createPolicy('weighted-least-connections').pick([]), undefined);
  });

  it('simulation: shares of 100 000 picks follow the weights 3/2/1 (within 1 %)', () => {
    const rng = mulberry32(99);
    const shares = simulate(
      createPolicy('weighted-least-connections', { random: rng }),
      [
        { id: 'a', weight: 3 },
        { id: 'b', weight: 2 },
        { id: 'c', weight: 1 },
      ],
      rng,
      // ~200 concurrent connections: the "+ 1" then shifts shares by well under 1 %.
      { maxLifetime: 400 },
    );
    assertShares(shares, { a: 3 / 6, b: 2 / 6, c: 1 / 6 });
  });
});
