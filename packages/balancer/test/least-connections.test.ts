import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import { createPolicy } from '../src/create-policy.js';
import { assertShares, countPicks, simulate } from './helpers/simulate.js';

describe('least-connections', () => {
  it('picks the backend with the fewest connections, whatever its weight', () => {
    const p = createPolicy('least-connections', { random: mulberry32(1) });
    const pick = p.pick([
      { id: 'a', weight: 10, count: 4 },
      { id: 'b', weight: 1, count: 2 },
      { id: 'c', weight: 5, count: 3 },
    ]);
    assert.equal(pick?.id, 'b');
  });

  it('breaks ties at random: a seeded source picks every tied backend, never a busier one', () => {
    const p = createPolicy('least-connections', { random: mulberry32(7) });
    const seen = countPicks(
      p,
      [
        { id: 'a', weight: 1, count: 1 },
        { id: 'busy', weight: 1, count: 2 },
        { id: 'b', weight: 1, count: 1 },
        { id: 'c', weight: 1, count: 1 },
      ],
      3000,
    );
    assert.equal(seen.get('busy'), undefined);
    for (const id of ['a', 'b', 'c']) {
      const n = seen.get(id) ?? 0;
      assert.ok(n > 850 && n < 1150, `${id} picked ${n} of 3000 times`);
    }
  });

  it('returns undefined for an empty set', () => {
    assert.equal(createPolicy('least-connections').pick([]), undefined);
  });

  it('simulation: equal backends get equal shares of 100 000 picks (within 1 %)', () => {
    const rng = mulberry32(42);
    const shares = simulate(
      createPolicy('least-connections', { random: rng }),
      [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 1 },
        { id: 'c', weight: 1 },
      ],
      rng,
      { maxLifetime: 60 },
    );
    assertShares(shares, { a: 1 / 3, b: 1 / 3, c: 1 / 3 });
  });

  it('simulation: a backend loaded from elsewhere gets fewer new connections', () => {
    const rng = mulberry32(5);
    const shares = simulate(
      createPolicy('least-connections', { random: rng }),
      [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 1 },
      ],
      rng,
      // ~100 concurrent connections; b also carries 40 of another node's: equal totals need
      // a at 70 and b at 30 of ours, so a takes 70 % of the new connections.
      { maxLifetime: 199, fixedLoad: { b: 40 } },
    );
    assertShares(shares, { a: 0.7, b: 0.3 });
  });
});
