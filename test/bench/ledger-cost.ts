// Cost of one acquire + release per session: MemoryLedger against RedisLedger on a real local
// Redis, in the same run, sequential and with 50 sessions at once; a Redis PING round trip is the
// floor. Prints the figures and the ratios. Run: node test/dist/bench/ledger-cost.js [iterations]
import { performance } from 'node:perf_hooks';
import { type Ledger, MemoryLedger, RedisLedger } from '@smtp-lb/ledger';
import { startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';

const iterations = Number(process.argv[2] ?? 5000);

async function sequential(ledger: Ledger, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const lease = await ledger.tryAcquire('bench:25', 1_000_000);
    if (!lease) throw new Error('refused');
    lease.release();
  }
  return ((performance.now() - t0) * 1000) / n;
}

async function concurrent(ledger: Ledger, n: number, width: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next++ < n) {
        const lease = await ledger.tryAcquire('bench:25', 1_000_000);
        if (!lease) throw new Error('refused');
        await new Promise((r) => setImmediate(r));
        lease.release();
      }
    }),
  );
  return ((performance.now() - t0) * 1000) / n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const redis = await startRedis();
  const ping = new Redis(redis.url);
  const memory = new MemoryLedger();
  const shared = await RedisLedger.create({
    redis: redis.url,
    nodeId: 'bench',
    leaseTtlMs: 15_000,
    onRedisDown: 'reject',
    keyPrefix: 'bench',
  });
  try {
    const rows: Record<string, { memory: number[]; redis: number[] }> = {
      sequential: { memory: [], redis: [] },
      '50 at once': { memory: [], redis: [] },
    };
    const pings: number[] = [];
    for (let round = 0; round < 3; round++) {
      rows.sequential!.memory.push(await sequential(memory, iterations));
      rows.sequential!.redis.push(await sequential(shared, iterations));
      rows['50 at once']!.memory.push(await concurrent(memory, iterations, 50));
      rows['50 at once']!.redis.push(await concurrent(shared, iterations, 50));
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) await ping.ping();
      pings.push(performance.now() - t0);
    }
    console.log(`acquire + release, ${iterations} per measurement, median of 3 (µs per session)`);
    console.log('| mode | in-memory | Redis | Redis − in-memory |');
    console.log('|---|---|---|---|');
    for (const [name, r] of Object.entries(rows)) {
      const m = median(r.memory);
      const x = median(r.redis);
      console.log(`| ${name} | ${m.toFixed(2)} | ${x.toFixed(1)} | ${(x - m).toFixed(1)} |`);
    }
    console.log(`Redis PING round trip: ${median(pings).toFixed(1)} µs (the floor of one Redis call)`);
  } finally {
    await shared.close();
    await memory.close();
    ping.disconnect();
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
