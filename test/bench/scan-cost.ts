// What a content scanner costs: messages per second through one node with and without the rspamd
// scanner (smtp-source -> node -> smtp-sink, rspamd on the same machine), and the latency it adds per
// message at a fixed rate (p50/p99, our open-loop load generator). The two nodes run side by side and
// are measured in interleaved rounds, so the figures are ratios taken under the same machine load.
// For reference, rspamd alone: the same message posted to /checkv2 by 10 concurrent clients.
// Run: node test/dist/bench/scan-cost.js [rounds] [messages-per-round]
import { makeTempDir, startRspamd, startSmtpSink } from '@smtp-lb/testkit';
import { measureLatency, message } from './load-generator.js';
import { runSmtpSource } from './smtp-source.js';
import { median } from './stats.js';
import { startNode, type Target } from './targets.js';

const rounds = Number(process.argv[2] ?? 3);
const messages = Number(process.argv[3] ?? 1000);

const sink = await startSmtpSink({ backlog: 1024 });
const rspamd = await startRspamd();
const dir = await makeTempDir('scan-bench');
const running: Array<{ stop(): Promise<unknown> }> = [sink, rspamd];
try {
  const plain = await startNode(dir.path, { name: 'plain', sinkPort: sink.port });
  running.push(plain);
  const scanned = await startNode(dir.path, { name: 'scanned', sinkPort: sink.port, rspamd: rspamd.url });
  running.push(scanned);
  const paths: Target[] = [plain, scanned];
  const rates = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  const alone: number[] = [];
  const body = message(4096);
  const checkAlone = async () => {
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next++ < messages) {
          const res = await fetch(`${rspamd.url}/checkv2`, { method: 'POST', body: body.subarray(0, -3) });
          await res.text();
        }
      }),
    );
    return messages / ((performance.now() - started) / 1000);
  };
  const p50 = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  const p99 = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  const load = { sessions: 10, messages, size: 4096, reuse: true };
  // Warm-up: connections, JIT, rspamd's first tasks.
  for (const p of paths) await runSmtpSource({ ...load, messages: 200 }, p.port, 120_000);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? paths : [...paths].reverse();
    for (const p of order) {
      const run = await runSmtpSource(load, p.port, 300_000);
      rates.get(p.name)!.push(run.rate);
    }
    alone.push(await checkAlone());
    for (const p of order) {
      const lat = await measureLatency({
        port: p.port,
        rate: 50,
        durationMs: 8000,
        reuse: true,
        connections: 10,
        size: 4096,
        maxInFlight: 50,
      });
      if (lat.failed > 0) throw new Error(`${p.name}: ${lat.failed} transactions failed`);
      p50.get(p.name)!.push(lat.p50Ms);
      p99.get(p.name)!.push(lat.p99Ms);
    }
    console.error(`round ${r + 1}/${rounds} done`);
  }
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  console.log(
    `smtp-source -s ${load.sessions} -m ${messages} -l ${load.size} -d, ${rounds} interleaved rounds`,
  );
  for (const p of paths) {
    console.log(
      `${p.name.padEnd(8)} msg/s median ${median(rates.get(p.name)!).toFixed(1)} (${fmt(rates.get(p.name)!)}); ` +
        `50 msg/s latency p50 ${median(p50.get(p.name)!).toFixed(2)} ms (${fmt(p50.get(p.name)!)}), ` +
        `p99 ${median(p99.get(p.name)!).toFixed(2)} ms (${fmt(p99.get(p.name)!)})`,
    );
  }
  console.log(`rspamd alone, 10 concurrent /checkv2: ${median(alone).toFixed(1)} msg/s (${fmt(alone)})`);
  const ratio = median(rates.get('scanned')!.map((x, i) => x / rates.get('plain')![i]!));
  const added50 = median(p50.get('scanned')!.map((x, i) => x - p50.get('plain')![i]!));
  const added99 = median(p99.get('scanned')!.map((x, i) => x - p99.get('plain')![i]!));
  console.log(
    `scanned/plain throughput ${ratio.toFixed(2)}; added latency p50 ${added50.toFixed(2)} ms, p99 ${added99.toFixed(2)} ms`,
  );
} finally {
  for (const r of running.reverse()) await r.stop().catch(() => {});
  await dir.remove();
}
