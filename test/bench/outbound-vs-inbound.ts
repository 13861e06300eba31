// Node CPU per message of an outbound node (an `mx` pool: the recipient domain's MX from dnsmasq)
// against an inbound node (a static pool) on the same load: smtp-source -> node -> smtp-sink, both
// modes, the two nodes interleaved A B B A so that other load on the machine falls on both alike.
//   node test/dist/bench/outbound-vs-inbound.js [rounds]
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  makeTempDir,
  startDnsmasq,
  startProcess,
  startSmtpSink,
  waitForPort,
} from '@smtp-lb/testkit';
import { groupCpu } from './process-cpu.js';
import { runSmtpSource } from './smtp-source.js';
import { median } from './stats.js';
import { nodeConfig } from './targets.js';

const HOST = '127.0.0.1';
const CLI = fileURLToPath(new URL('../../../packages/proxy/dist/src/cli.js', import.meta.url));
const rounds = Number(process.argv[2] ?? 5);

const dir = await makeTempDir('outbound-bench');
const sink = await startSmtpSink();
// smtp-source sends to rcpt@sink.bench.test: its MX is the sink.
const dns = await startDnsmasq({
  local: ['bench.test'],
  mx: { 'sink.bench.test': [{ host: 'mx.sink.bench.test', preference: 10 }] },
  hosts: { 'mx.sink.bench.test': [HOST] },
  ttl: 3600,
});

function outboundConfig(port: number): string {
  return `node: { id: outbound }
listeners:
  - { name: out, role: outbound, listen: ${HOST}:${port}, hostname: relay.bench.test, pool: internet, clients: [127.0.0.0/8] }
pools:
  internet:
    mx: { port: ${sink.port}, resolvers: [${dns.address}], denyDestinations: [], maxConnections: 1000 }
    tls: none
admin: { listen: ${HOST}:0 }
log: { level: warn }
`;
}

const nodes = [];
for (const name of ['inbound', 'outbound']) {
  const port = await freePort(HOST);
  const file = path.join(dir.path, `${name}.yaml`);
  await writeFile(
    file,
    name === 'inbound' ? nodeConfig({ name, sinkPort: sink.port }, port) : outboundConfig(port),
  );
  const proc = startProcess(name, process.execPath, [CLI, '--config', file]);
  await waitForPort(port, { process: proc, timeoutMs: 15_000 });
  nodes.push({ name, port, proc });
}
const loads = {
  new: { sessions: 20, messages: 1500, size: 4096, reuse: false },
  reuse: { sessions: 20, messages: 4000, size: 4096, reuse: true },
};
try {
  for (const [mode, load] of Object.entries(loads)) {
    const us: Record<string, number[]> = { inbound: [], outbound: [] };
    for (const n of nodes) await runSmtpSource({ ...load, messages: 300 }, n.port, 180_000); // warm-up
    for (let r = 0; r < rounds; r++) {
      for (const n of r % 2 === 0 ? nodes : [...nodes].reverse()) {
        const before = await groupCpu([n.proc.pid]);
        await runSmtpSource(load, n.port, 180_000);
        const after = await groupCpu([n.proc.pid]);
        us[n.name]!.push(((after.user + after.system - before.user - before.system) / load.messages) * 1e6);
      }
    }
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
    const a = median(us.inbound!);
    const b = median(us.outbound!);
    process.stdout.write(
      `${mode}: inbound ${a.toFixed(0)} us/msg (${fmt(us.inbound!)}), outbound ${b.toFixed(0)} us/msg (${fmt(us.outbound!)}), ratio ${(b / a).toFixed(3)}\n`,
    );
  }
} finally {
  for (const n of nodes) await n.proc.stop();
  await dns.stop();
  await sink.stop();
  await dir.remove();
}
