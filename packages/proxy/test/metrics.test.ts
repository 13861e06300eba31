// The message-path counters add up in plain numbers between scrapes: a scrape must show exactly what
// prom-client's own Counter would, and prom-client's checks must still refuse bad input.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { Metrics } from '../src/metrics.js';

async function values(registry: Registry, name: string) {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .map((v) => ({ labels: v.labels, value: v.value }))
    .sort((a, b) => {
      const ka = JSON.stringify(a.labels);
      const kb = JSON.stringify(b.labels);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
}

describe('Metrics counters', () => {
  it('scrape like a plain prom-client Counter fed the same calls, before and after earlier scrapes', async () => {
    const m = new Metrics();
    const reference = new Registry();
    const plain = new Counter({
      name: 'smtp_lb_backend_replies_total',
      help: 'reference',
      labelNames: ['backend', 'command', 'code'] as const,
      registers: [reference],
    });
    const calls: Array<[{ backend: string; command: string; code: string }, number | undefined]> = [];
    for (let i = 0; i < 500; i++) {
      const labels = { backend: `b${i % 3}`, command: i % 2 ? 'RCPT' : 'DATA', code: String(250 + (i % 5)) };
      calls.push([labels, i % 7 === 0 ? 2.5 : undefined]);
    }
    for (const [i, [labels, value]] of calls.entries()) {
      m.backendReplies.inc(labels, value);
      plain.inc({ ...labels }, value);
      if (i === 100 || i === 499) {
        const name = 'smtp_lb_backend_replies_total';
        assert.deepEqual(
          await values(m.registry, name),
          await values(reference, name),
          `after ${i + 1} calls`,
        );
      }
    }
    m.transactionsTotal.inc({ pool: 'p', backend: 'b', result: 'ok' });
    m.transactionsTotal.inc({ pool: 'p', backend: 'b', result: 'ok' });
    assert.deepEqual(await values(m.registry, 'smtp_lb_transactions_total'), [
      { labels: { pool: 'p', backend: 'b', result: 'ok' }, value: 2 },
    ]);
  });

  it('refuses what prom-client refuses: a negative or non-finite value, an unknown label', () => {
    const m = new Metrics();
    m.sessionsTotal.inc({ listener: 'in', outcome: 'closed' });
    assert.throws(() => m.sessionsTotal.inc({ listener: 'in', outcome: 'closed' }, -1));
    assert.throws(() => m.sessionsTotal.inc({ listener: 'in', outcome: 'closed' }, Number.POSITIVE_INFINITY));
    assert.throws(() => m.sessionsTotal.inc({ listener: 'in', bogus: 'x' } as never));
  });
});
