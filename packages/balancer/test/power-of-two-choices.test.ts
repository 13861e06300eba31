import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import { createPolicy } from '../src/create-policy.js';
import { assertShares, countPicks, simulate } from './helpers/simulate.js';

describe('power-of-two-choices', () => {
  it('returns the only candidate, and undefined for an empty set', () => {
    const p = createPolicy('power-of-two-choices', { random: mulberry32(1) });
    assert.equal(p.pick([{ id: 'solo', weight: 1, count: 99 }])?.id, 'solo');
    assert.equal(p.pick([]), undefined);
  });

  it('with two backends always takes the idler one (samples without replacement)', () => {
    const p = createPolicy('power-of-two-choices', { random: mulberry32(2) });
    const seen = countPicks(
      p,
      [
        { id: 'busy', weight: 1, count: 3 },
        { id: 'idle', weight: 1, count: 2 },
      ],
      1000,
    );
    assert.equal(seen.get('idle'), 1000);
  });

  it('compares count / weight', () => {
    const p = createPolicy('power-of-two-choices', { random: mulberry32(3) });
    // big: 4/4 = 1 beats small: 2/1 = 2 although it holds more connections.
    const seen = countPicks(
      p,
      [
        { id: 'big', weight: 4, count: 4 },
        { id: 'small', weight: 1, count: 2 },
      ],
      200,
    );
    assert.equal(seen.get('big'), 200);
  });

  it('breaks ties at random: a seeded source gives both', () => {
    const p = createPolicy('power-of-two-choices', { random: mulberry32(4) });
    const seen = countPicks(
      p,
      [
        { id: 'a', weight: 1, count: 1 },
        { id: 'b', weight: 1, count: 1 },
      ],
      2000,
    );
    for (const id of ['a', 'b']) {
      const n = seen.get(id) ?? 0;
      assert.ok(n > 850 && n < 1150, `${id} picked ${n} of 2000 times`);
    }
  });

  it('strongly prefers an idle backend: chosen whenever sampled, 2/3 of 100 000 picks among 3', () => {
    const rng = mulberry32(5);
    const p = createPolicy('power-of-two-choices', { random: rng });
    const seen = countPicks(
      p,
      [
        { id: 'idle', weight: 1, count: 0 },
        { id: 'loaded1', weight: 1, count: 10 },
        { id: 'loaded2', weight: 1, count: 10 },
      ],
      100_000,
    );
    const share = (id: string) => (seen.get(id) ?? 0) / 100_000;
    assertShares(new Map([...seen.keys()].map((id) => [id, share(id)])), {
      idle: 2 / 3,
      loaded1: 1 / 6,
      loaded2: 1 / 6,
    });
  });

  it('simulation: equal backends get equal shares of 100 000 picks (within 1 %)', () => {
    const rng = mulberry32(6);
    const shares = simulate(
      createPolicy('power-of-two-choices', { random: rng }),
      [
        { id: 'a', weight: 1 },
        { id: 'b', weight: 1 },
        { id: 'c', weight: 1 },
        { id: 'd', weight: 1 },
      ],
      rng,
      { maxLifetime: 60 },
    );
    assertShares(shares, { a: 0.25, b: 0.25, c: 0.25, d: 0.25 });
  });

  it('simulation: an idle backend draws new connections away from a loaded one', () => {
    const rng = mulberry32(8);
    const shares = simulate(
      createPolicy('power-of-two-choices', { random: rng }),
      [
        { id: 'idle', weight: 1 },
        { id: 'loaded', weight: 1 },
      ],
      rng,
      { maxLifetime: 199, fixedLoad: { loaded: 40 } },
    );
    // Two candidates: P2C degenerates to least-connections, so the split is the same as there.
    assertShares(shares, { idle: 0.7, loaded: 0.3 });
  });
});
