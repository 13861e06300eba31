import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import { createPolicy } from '../src/create-policy.js';
import { HealthPenalty } from '../src/passive-health.js';
import { assertShares, simulate } from './helpers/simulate.js';

describe('HealthPenalty', () => {
  it('halves the weight on each error, down to weight / 16', () => {
    const h = new HealthPenalty();
    const weights: number[] = [];
    for (let k = 0; k < 6; k++) {
      h.penalize('a');
      weights.push(h.effectiveWeight('a', 32));
    }
    assert.deepEqual(weights, [16, 8, 4, 2, 2, 2]);
    assert.equal(h.effectiveWeight('b', 32), 32, 'other backends are untouched');
  });

  it('restores the weight stepwise on success', () => {
    const h = new HealthPenalty();
    for (let k = 0; k < 4; k++) h.penalize('a');
    const weights: number[] = [];
    for (let k = 0; k < 5; k++) {
      h.reward('a');
      weights.push(h.effectiveWeight('a', 16));
    }
    assert.deepEqual(weights, [2, 4, 8, 16, 16]);
  });

  it('takes a custom floor and forgets a backend', () => {
    const h = new HealthPenalty({ floor: 0.25 });
    for (let k = 0; k < 5; k++) h.penalize('a');
    assert.equal(h.factor('a'), 0.25);
    h.forget('a');
    assert.equal(h.factor('a'), 1);
    assert.throws(() => new HealthPenalty({ floor: 0 }), RangeError);
  });

  it('a penalised backend gets a proportionally smaller share under weighted round robin', () => {
    const h = new HealthPenalty();
    h.penalize('flaky');
    h.penalize('flaky');
    const wrr = createPolicy('weighted-round-robin');
    const rng = mulberry32(1);
    // The proxy applies the penalty before each pick; here it is constant: 4 * 1/4 = 1 vs 3.
    const shares = simulate(
      {
        name: wrr.name,
        pick: (cs) => wrr.pick(cs.map((c) => ({ ...c, weight: h.effectiveWeight(c.id, c.weight) }))),
      },
      [
        { id: 'flaky', weight: 4 },
        { id: 'steady', weight: 3 },
      ],
      rng,
      { picks: 10_000 },
    );
    assertShares(shares, { flaky: 0.25, steady: 0.75 });
  });
});
