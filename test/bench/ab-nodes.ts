// A/B of two smtp-lb builds in the same run: node CPU per message (user + system of the node's
// process group) under smtp-source, both modes (a new connection per message, reused connections),
// the two builds interleaved A B B A ... so that other load on the machine falls on both alike.
//   node test/dist/bench/ab-nodes.js <baseline cli.js> [rounds] [candidate cli.js]
// The candidate defaults to this work tree's build (packages/proxy/dist/src/cli.js). Prints
// medians and ratios. AB_BASELINE_NODE=/path/to/node runs the baseline on another Node.js (the same
// build on two Node.js versions: give this tree's cli.js as the baseline).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir, startProcess, startSmtpSink, waitForPort } from '@smtp-lb/testkit';
import { groupCpu } from './process-cpu.js';
import { runSmtpSource } from './smtp-source.js';
import { median } from './stats.js';
import { nodeConfig } from './targets.js';

const HOST = '127.0.0.1';
const THIS = fileURLToPath(new URL('../../../packages/proxy/dist/src/cli.js', import.meta.url));
const baseline = process.argv[2];
const rounds = Number(process.argv[3] ?? 5);
const candidate = process.argv[4] ? path.resolve(process.argv[4]) : THIS;
if (!baseline) throw new Error('usage: ab-nodes.js <baseline cli.js> [rounds]');

const dir = await makeTempDir('ab');
const sink = await startSmtpSink();
const builds = [
  { name: 'baseline', cli: path.resolve(baseline), node: process.env.AB_BASELINE_NODE ?? process.execPath },
  { name: 'this', cli: candidate, node: process.execPath },
];
const nodes = [];
for (const b of builds) {
  const port = await freePort(HOST);
  const file = path.join(dir.path, `${b.name}.yaml`);
  await writeFile(file, nodeConfig({ name: b.name, sinkPort: sink.port }, port));
  const proc = startProcess(b.name, b.node, [b.cli, '--config', file]);
  await waitForPort(port, { process: proc, timeoutMs: 15_000 });
  nodes.push({ ...b, port, proc });
}
const loads = {
  new: { sessions: 20, messages: 1500, size: 4096, reuse: false },
  reuse: { sessions: 20, messages: 4000, size: 4096, reuse: true },
};
const results: Record<string, Record<string, number[]>> = {
  new: { baseline: [], this: [] },
  reuse: { baseline: [], this: [] },
};
try {
  for (const [mode, load] of Object.entries(loads)) {
    for (const n of nodes) await runSmtpSource({ ...load, messages: 300 }, n.port, 180_000); // warm-up
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? nodes : [...nodes].reverse();
      for (const n of order) {
        const before = await groupCpu([n.proc.pid]);
        await runSmtpSource(load, n.port, 180_000);
        const after = await groupCpu([n.proc.pid]);
        const us = ((after.user + after.system - before.user - before.system) / load.messages) * 1e6;
        results[mode]![n.name]!.push(us);
      }
    }
    const base = median(results[mode]!.baseline!);
    const mine = median(results[mode]!.this!);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
    process.stdout.write(
      `${mode}: baseline ${base.toFixed(0)} us/msg (${fmt(results[mode]!.baseline!)}), this ${mine.toFixed(0)} us/msg (${fmt(results[mode]!.this!)}), ratio ${(mine / base).toFixed(3)}\n`,
    );
  }
} finally {
  for (const n of nodes) await n.proc.stop();
  await sink.stop();
  await dir.remove();
}
