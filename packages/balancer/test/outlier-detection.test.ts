import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '@smtp-lb/testkit';
import { createPolicy } from '../src/create-policy.js';
import { type OutlierDetectionOptions, OutlierDetector } from '../src/outlier-detection.js';

const S = 1000;
const OPTIONS: OutlierDetectionOptions = {
  window: 60 * S,
  minimumVolume: 20,
  deferralPercent: 50,
  consecutiveFailures: 5,
  baseEjectionTime: 30 * S,
  maxEjectionTime: 300 * S,
  maxEjectedPercent: 50,
};

function detector(ids: string[], o: Partial<OutlierDetectionOptions> = {}): OutlierDetector {
  const d = new OutlierDetector({ ...OPTIONS, ...o });
  d.setBackends(ids);
  return d;
}

interface Run {
  /** Transactions each backend got. */
  got: Map<string, number>;
  /** Time of each transaction of each backend. */
  times: Map<string, number[]>;
  ejections: Array<{ id: string; at: number; until: number }>;
  /** The ejected backends, sampled once per simulated second. */
  ejectedAt: Map<number, string[]>;
}

/**
 * The proxy's loop in small: each step (every `stepMs`) one transaction goes to a backend picked by
 * smooth WRR over the backends not ejected, with their weights cut by the detector; it is deferred
 * with that backend's probability at that moment (`deferP`), and the detector hears the vote.
 */
function simulate(
  d: OutlierDetector,
  ids: string[],
  deferP: (id: string, t: number) => number,
  opts: { seed: number; steps: number; stepMs: number; startMs?: number },
): Run {
  const rng = mulberry32(opts.seed);
  const wrr = createPolicy('weighted-round-robin');
  const run: Run = {
    got: new Map(ids.map((id) => [id, 0])),
    times: new Map(ids.map((id) => [id, []])),
    ejections: [],
    ejectedAt: new Map(),
  };
  for (let k = 0; k < opts.steps; k++) {
    const t = (opts.startMs ?? 0) + k * opts.stepMs;
    const open = ids.filter((id) => !d.isEjected(id, t));
    if (t % S === 0)
      run.ejectedAt.set(
        t / S,
        ids.filter((id) => d.isEjected(id, t)),
      );
    const pick = wrr.pick(open.map((id) => ({ id, weight: 16 * d.factor(id, t), count: 0 })));
    assert.ok(pick, 'never every backend ejected');
    run.got.set(pick.id, run.got.get(pick.id)! + 1);
    run.times.get(pick.id)!.push(t);
    const deferred = rng() < deferP(pick.id, t);
    const decision = d.transaction(pick.id, deferred, t);
    if (decision?.ejected) run.ejections.push({ id: pick.id, at: t, until: decision.until! });
  }
  return run;
}

describe('OutlierDetector: connection failures', () => {
  it('ejects after consecutiveFailures in a row; a success in between starts the count again', () => {
    const d = detector(['a', 'b']);
    for (let k = 0; k < 4; k++) assert.equal(d.connectFailed('a', 0), undefined);
    d.connected('a');
    for (let k = 0; k < 4; k++) assert.equal(d.connectFailed('a', 1), undefined);
    const decision = d.connectFailed('a', 2);
    assert.deepEqual(decision, {
      id: 'a',
      reason: 'failures',
      ejected: true,
      until: 2 + 30 * S,
      ejections: 1,
    });
    assert.equal(d.isEjected('a', 30 * S + 1), true);
    assert.equal(d.isEjected('a', 30 * S + 2), false, 'back after the base ejection time');
    assert.equal(d.isEjected('b', 0), false);
  });

  it('each ejection lasts base x n, up to maxEjectionTime; time in the pool forgives one per base time', () => {
    const d = detector(['a', 'b'], { consecutiveFailures: 1, maxEjectionTime: 100 * S });
    let t = 0;
    const durations: number[] = [];
    for (let k = 0; k < 5; k++) {
      const decision = d.connectFailed('a', t)!;
      durations.push((decision.until! - t) / S);
      t = decision.until!; // fails again the moment it is back
    }
    assert.deepEqual(durations, [30, 60, 90, 100, 100]);
    assert.equal(d.state('a', t).ejections, 5);
    // 2 base times healthy: two ejections forgiven, the next lasts 4 x 30 s, within the cap of 100 s.
    t += 60 * S;
    assert.equal(d.state('a', t).ejections, 3);
    assert.equal((d.connectFailed('a', t)!.until! - t) / S, 100);
    t += 100 * S + 300 * S;
    assert.equal(d.state('a', t).ejections, 0);
    assert.equal((d.connectFailed('a', t)!.until! - t) / S, 30);
  });

  it('consecutiveFailures 0 never ejects for failures', () => {
    const d = detector(['a', 'b'], { consecutiveFailures: 0 });
    for (let k = 0; k < 100; k++) assert.equal(d.connectFailed('a', k), undefined);
  });
});

describe('OutlierDetector: deferral share', () => {
  it('a backend deferring everything is ejected at minimumVolume transactions, not before', () => {
    const d = detector(['bad', 'good']);
    for (let k = 0; k < 18; k++) {
      assert.equal(d.transaction('bad', true, k), undefined);
      d.transaction('good', false, k);
    }
    assert.equal(d.state('bad', 19).transactions, 18);
    assert.equal(d.factor('bad', 19), 1, 'below minimumVolume nothing is judged, not even the weight');
    assert.equal(d.transaction('bad', true, 19), undefined, 'nor without another backend to compare with');
    d.transaction('good', false, 19);
    d.transaction('good', false, 19);
    const decision = d.transaction('bad', true, 20);
    assert.equal(decision?.ejected, true);
    assert.equal(decision?.reason, 'deferrals');
    assert.equal(d.state('bad', 21).transactions, 0, 'it comes back with a clean slate');
  });

  it('counts leave the window: old deferrals are forgotten', () => {
    const d = detector(['a', 'b']);
    for (let k = 0; k < 15; k++) d.transaction('a', true, 0);
    // A window later those 15 are gone: 15 new ones alone are still under minimumVolume.
    for (let k = 0; k < 15; k++) assert.equal(d.transaction('a', true, 61 * S), undefined);
    assert.equal(d.state('a', 61 * S).transactions, 15);
  });

  it('greylisting that every backend sees alike ejects nobody and cuts no weight (seeded, 100 000 transactions)', () => {
    const ids = ['m1', 'm2', 'm3', 'm4'];
    const d = detector(ids);
    // 40 % of transactions greylisted, in bursts: a quarter of each minute it is 90 %.
    const p = (_id: string, t: number) => ((t / S) % 60 < 15 ? 0.9 : 0.4);
    const run = simulate(d, ids, p, { seed: 7, steps: 100_000, stepMs: 20 });
    assert.deepEqual(run.ejections, []);
    for (const id of ids) {
      const share = run.got.get(id)! / 100_000;
      assert.ok(Math.abs(share - 0.25) <= 0.01, `${id}: share ${share}`);
    }
  });

  it('a backend that defers everything stops getting transactions; it comes back and is ejected again for longer', () => {
    const ids = ['m1', 'm2', 'm3'];
    const d = detector(ids);
    // m2 defers everything from 10 s on; the others greylist 20 %.
    const p = (id: string, t: number) => (id === 'm2' && t >= 10 * S ? 1 : 0.2);
    const run = simulate(d, ids, p, { seed: 11, steps: 20_000, stepMs: 10 }); // 200 s, 100 tx/s
    const m2 = run.ejections.filter((e) => e.id === 'm2');
    assert.ok(m2.length >= 3, `ejected ${m2.length} times`);
    assert.equal(run.ejections.length, m2.length, 'only m2 is ever ejected');
    // Its good first 10 s are still in the window, but the newest third of it (10-20 s) is judged
    // on its own too: found out within 20 s, not once the good ones have left the whole window.
    assert.ok(m2[0]!.at < 30 * S, `first ejection at ${m2[0]!.at} ms`);
    assert.deepEqual(
      m2.slice(0, 3).map((e) => (e.until - e.at) / S),
      [30, 60, 90],
    );
    // Once found out, it takes only the transactions it needs to be judged again after each return.
    const after = run.times.get('m2')!.filter((t) => t > m2[0]!.at).length;
    assert.ok(after <= 20 * (m2.length - 1) + 20, `m2 got ${after} transactions after its first ejection`);
    for (const e of m2) {
      const during = run.times.get('m2')!.filter((t) => t >= e.at + 1 && t < e.until).length;
      assert.equal(during, 0, 'nothing while ejected');
    }
  });

  it('a backend that recovers gets its full share back once its ejections are forgiven', () => {
    const ids = ['m1', 'm2'];
    const d = detector(ids);
    const p = (id: string, t: number) => (id === 'm2' && t < 5 * S ? 1 : 0.1);
    const first = simulate(d, ids, p, { seed: 3, steps: 4000, stepMs: 10 }); // 40 s
    assert.equal(first.ejections.length, 1);
    assert.equal(d.state('m2', 40 * S).ejections, 1);
    const later = simulate(d, ids, () => 0.1, { seed: 4, steps: 10_000, stepMs: 10, startMs: 40 * S });
    assert.deepEqual(later.ejections, []);
    const share = later.got.get('m2')! / 10_000;
    assert.ok(Math.abs(share - 0.5) <= 0.02, `m2 share ${share}`);
    assert.equal(d.state('m2', 140 * S).ejections, 0, 'forgiven after base ejection times in the pool');
  });

  it('a backend deferring 30 points more than the others keeps about half its weight', () => {
    const ids = ['m1', 'm2', 'm3'];
    const d = detector(ids, { minimumVolume: 50 });
    const p = (id: string) => (id === 'm3' ? 0.5 : 0.2);
    const run = simulate(d, ids, p, { seed: 5, steps: 60_000, stepMs: 10 });
    assert.deepEqual(run.ejections, []);
    // Cut from 10 points over (a fifth of 50) to 1/16 at 50: at 30 points 1 - 15/16 * 20/40 = 0.53,
    // a bit less as the best other one is a little luckier than 0.2: shares about 0.4, 0.4, 0.2.
    const f = d.factor('m3', 600 * S);
    assert.ok(f > 0.4 && f < 0.6, `factor ${f}`);
    const share = run.got.get('m3')! / 60_000;
    assert.ok(share > 0.17 && share < 0.24, `m3 share ${share}`);
  });

  it('never more than maxEjectedPercent of the pool at once; the rest stay at the weight floor', () => {
    const ids = ['m1', 'm2', 'm3', 'm4'];
    const d = detector(ids);
    const bad = new Set(['m1', 'm2', 'm3']);
    const run = simulate(d, ids, (id) => (bad.has(id) ? 1 : 0), { seed: 9, steps: 30_000, stepMs: 10 });
    for (const [second, ejected] of run.ejectedAt) assert.ok(ejected.length <= 2, `${ejected} at ${second}s`);
    assert.ok(
      [...run.ejectedAt.values()].some((e) => e.length === 2),
      'two of four are ejected at times',
    );
    // The healthy one carries most of the traffic.
    assert.ok(run.got.get('m4')! / 30_000 > 0.7, `m4 share ${run.got.get('m4')! / 30_000}`);
  });

  it('the only backend of a pool is never ejected', () => {
    const d = detector(['only'], { consecutiveFailures: 1 });
    for (let k = 0; k < 100; k++) d.transaction('only', true, k);
    assert.equal(d.isEjected('only', 100), false);
    assert.deepEqual(d.connectFailed('only', 101), {
      id: 'only',
      reason: 'failures',
      ejected: false,
      ejections: 0,
    });
  });

  it('forgets a backend that left the pool', () => {
    const d = detector(['a', 'b'], { consecutiveFailures: 1 });
    d.connectFailed('a', 0);
    assert.equal(d.isEjected('a', 1), true);
    d.setBackends(['b', 'c']);
    assert.equal(d.isEjected('a', 1), false);
    assert.equal(d.transaction('a', true, 2), undefined);
    d.setBackends(['a', 'b', 'c']);
    assert.equal(d.state('a', 3).ejections, 0);
  });

  it('refuses impossible options', () => {
    assert.throws(() => new OutlierDetector({ ...OPTIONS, deferralPercent: 0 }), RangeError);
    assert.throws(() => new OutlierDetector({ ...OPTIONS, maxEjectionTime: 1 }), RangeError);
    assert.throws(() => new OutlierDetector({ ...OPTIONS, window: 0 }), RangeError);
  });
});
