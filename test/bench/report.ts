// Renders the results of one `npm run bench` as BENCHMARKS.md: the machine, the commands, every
// figure with its ratio to the baseline of the same run, the targets of issue 7 with met / missed,
// the idle-session memory and the CPU profile summary.
import { type ConnectionResults, renderConnections } from './connection-management.js';
import type { ProfileSummary } from './cpu-profile.js';
import type { IdleResult } from './idle-sessions.js';
import type { LatencyRun } from './load-generator.js';
import { median } from './stats.js';

export type Mode = 'new' | 'reuse';

export interface PathResult {
  id: string;
  label: string;
  /** Messages per second of each repetition, in order. */
  rates: Record<Mode, number[]>;
  /** rate / direct rate of the same repetition. */
  ratios: Record<Mode, number[]>;
  /** CPU microseconds the proxy's processes used per message, each repetition. */
  cpuUs: Record<Mode, number[]>;
  /** Share of that CPU time spent in user space (the rest is the kernel's), each repetition. */
  userShare: Record<Mode, number[]>;
  error?: string;
}

export interface LatencyRow {
  id: string;
  label: string;
  run?: LatencyRun;
  error?: string;
}

export interface LatencyLevel {
  /** What the offered rate is half of, e.g. "direct". */
  basis: string;
  rate: number;
  durationMs: number;
  rows: LatencyRow[];
}

export interface Results {
  date: string;
  seconds: number;
  machine: Record<string, string>;
  load: { sessions: number; size: number; messages: Record<Mode, number>; reps: number };
  commands: string[];
  paths: PathResult[];
  /** Per mode: first at 50 % of direct's throughput (the issue's load), then at a lighter load. */
  latency: Record<Mode, LatencyLevel[]>;
  idle?: IdleResult;
  idleError?: string;
  profiles: Array<{ title: string; file: string; summary?: ProfileSummary; error?: string }>;
  /** Issue 16: the backend capped, slow clients, HAProxy against smtp-lb. */
  connections?: ConnectionResults;
  connectionsError?: string;
  findings: string;
}

const MODE_NAME: Record<Mode, string> = {
  new: 'new connection per message',
  reuse: 'connections reused (`-d`)',
};

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

function path(r: Results, id: string): PathResult | undefined {
  const p = r.paths.find((x) => x.id === id);
  return p && !p.error && p.rates.new.length > 0 ? p : undefined;
}

/** Median over repetitions of a/b measured in the same repetition. */
function pairedRatio(a: PathResult | undefined, b: PathResult | undefined, mode: Mode): number {
  if (!a || !b) return Number.NaN;
  const n = Math.min(a.rates[mode].length, b.rates[mode].length);
  return median(Array.from({ length: n }, (_, i) => a.rates[mode][i]! / b.rates[mode][i]!));
}

function latencyRow(r: Results, mode: Mode, id: string): LatencyRun | undefined {
  return r.latency[mode][0]?.rows.find((x) => x.id === id)?.run;
}

interface Target {
  what: string;
  figure: string;
  met: boolean | undefined;
}

function targets(r: Results): Target[] {
  const direct = path(r, 'direct');
  const node = path(r, 'node-mem');
  const out: Target[] = [];
  const ratio = (mode: Mode, want: number, what: string) => {
    const x = pairedRatio(node, direct, mode);
    out.push({ what, figure: `${f2(x)} × direct`, met: Number.isFinite(x) ? x >= want : undefined });
  };
  ratio('new', 0.5, 'one node, new connection per message ≥ 0.50 × direct');
  ratio('reuse', 0.8, 'one node, reused connections ≥ 0.80 × direct');
  for (const mode of ['new', 'reuse'] as const) {
    const x = pairedRatio(node, path(r, 'nginx'), mode);
    out.push({
      what: `≥ 3 × nginx mail proxy, ${MODE_NAME[mode]}`,
      figure: `${f2(x)} × nginx`,
      met: Number.isFinite(x) ? x >= 3 : undefined,
    });
  }
  for (const mode of ['new', 'reuse'] as const) {
    const x = pairedRatio(path(r, 'node-redis'), node, mode);
    out.push({
      what: `Redis ledger ≥ 0.90 × in-memory ledger, ${MODE_NAME[mode]}`,
      figure: `${f2(x)} × in-memory`,
      met: Number.isFinite(x) ? x >= 0.9 : undefined,
    });
  }
  for (const mode of ['new', 'reuse'] as const) {
    const base = latencyRow(r, mode, 'direct');
    const run = latencyRow(r, mode, 'node-mem');
    const added = base && run ? run.p99Ms - base.p99Ms : Number.NaN;
    const kept = run ? run.failed === 0 : false;
    out.push({
      what: `p99 added latency ≤ 2 ms at 50 % of direct throughput, ${MODE_NAME[mode]}`,
      figure: Number.isFinite(added)
        ? `${f2(added)} ms${kept ? '' : ` (${run!.failed} of ${run!.offered} not done in time)`}`
        : '—',
      met: Number.isFinite(added) ? added <= 2 && kept : undefined,
    });
  }
  const idle = r.idle;
  const perSession = idle ? (idle.rssHeld - idle.rssBefore) / idle.sessions : Number.NaN;
  out.push({
    what: `≤ 20 KiB RSS per idle session (N = ${idle?.sessions ?? '—'})`,
    figure: Number.isFinite(perSession) ? kib(perSession) : '—',
    met: Number.isFinite(perSession) ? perSession <= 20 * 1024 : undefined,
  });
  return out;
}

function throughputTable(r: Results): string[] {
  const direct = path(r, 'direct');
  const lines = [
    `| path | ${MODE_NAME.new}: msg/s | ratio to direct | proxy CPU µs/msg | ${MODE_NAME.reuse}: msg/s | ratio to direct | proxy CPU µs/msg |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const p of r.paths) {
    if (p.error || p.rates.new.length === 0) {
      lines.push(`| ${p.label} | not measured: ${p.error ?? 'no run'} | | | | | |`);
      continue;
    }
    const cells = (['new', 'reuse'] as const).map((m) => {
      const runs = p.rates[m].map((x) => x.toFixed(0)).join(', ');
      const cpu =
        p.id === 'direct'
          ? '—'
          : `${median(p.cpuUs[m]).toFixed(0)} (${(median(p.userShare[m]) * 100).toFixed(0)} % user)`;
      return `${f1(median(p.rates[m]))} (${runs}) | ${f2(pairedRatio(p, direct, m))} | ${cpu}`;
    });
    lines.push(`| ${p.label} | ${cells.join(' | ')} |`);
  }
  const pipe = path(r, 'node-pipe');
  const node = path(r, 'node-mem');
  if (pipe && node) {
    lines.push(
      '',
      `One smtp-lb node against the plain Node.js TCP pipe (same run, median of paired ratios): ${f2(pairedRatio(node, pipe, 'new'))} × with a new connection per message, ${f2(pairedRatio(node, pipe, 'reuse'))} × on reused connections. The pipe does no SMTP at all; it is what a Node.js process pays for the sockets alone.`,
    );
  }
  return lines;
}

function latencyTable(l: LatencyLevel, mode: Mode): string[] {
  const base = l.rows.find((x) => x.id === 'direct')?.run;
  const lines = [
    `${MODE_NAME[mode]}: offered ${f1(l.rate)} transactions/s (50 % of ${l.basis}'s median smtp-source rate) for ${l.durationMs / 1000} s.`,
    '',
    '| path | done / offered | achieved tx/s | p50 ms | p99 ms | added p50 ms | added p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of l.rows) {
    const x = row.run;
    if (!x) {
      lines.push(`| ${row.label} | not measured: ${row.error ?? 'no run'} | | | | | |`);
      continue;
    }
    const added = (v: number, b: number | undefined) =>
      b === undefined || row.id === 'direct' ? '—' : f2(v - b);
    lines.push(
      `| ${row.label} | ${x.completed} / ${x.offered} | ${f1(x.achievedRate)} | ${f2(x.p50Ms)} | ${f2(x.p99Ms)} | ${added(x.p50Ms, base?.p50Ms)} | ${added(x.p99Ms, base?.p99Ms)} |`,
    );
  }
  return [...lines, ''];
}

function profileSection(p: Results['profiles'][number]): string[] {
  const out = [`### ${p.title}`, ''];
  if (!p.summary) return [...out, `Not measured: ${p.error ?? 'no profile'}`, ''];
  const s = p.summary;
  out.push(
    `Profile \`${p.file}\`: ${f1(s.totalMs / 1000)} s sampled, idle ${pct(s.idleShare)}; shares below are of the busy ${f1(s.busyMs / 1000)} s.`,
    '',
    '| self time: function | ms | busy share |',
    '| --- | ---: | ---: |',
    ...s.functions.map((x) => `| \`${x.name}\` | ${x.ms.toFixed(0)} | ${pct(x.busyShare)} |`),
    '',
    '| self time: module | ms | busy share |',
    '| --- | ---: | ---: |',
    ...s.modules.map((x) => `| ${x.name} | ${x.ms.toFixed(0)} | ${pct(x.busyShare)} |`),
    '',
    '| native self time ← first caller in our code or a dependency | ms | busy share |',
    '| --- | ---: | ---: |',
    ...s.nativeByCaller.map((x) => `| \`${x.name}\` | ${x.ms.toFixed(0)} | ${pct(x.busyShare)} |`),
    '',
  );
  return out;
}

export function renderReport(r: Results): string {
  const idle = r.idle;
  const lines: string[] = [
    '# Benchmarks',
    '',
    `Written by \`npm run bench\` (test/bench/, ${r.seconds.toFixed(0)} s) on ${r.date}. Every figure is a ratio to a`,
    'baseline measured in the same run on the same machine: absolute numbers on a shared 2-core machine mean',
    'little. Load and sink are Postfix tools; all traffic is on 127.0.0.1.',
    '',
    '## Machine',
    '',
    '| | |',
    '| --- | --- |',
    ...Object.entries(r.machine).map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '## Commands',
    '',
    ...r.commands.map((c) => `- ${c}`),
    '',
    '## Targets (issue 7)',
    '',
    '| target | figure | met |',
    '| --- | --- | --- |',
    ...targets(r).map(
      (t) =>
        `| ${t.what} | ${t.figure} | ${t.met === undefined ? 'not measured' : t.met ? 'met' : '**missed**'} |`,
    ),
    '',
    '## Throughput',
    '',
    `smtp-source, ${r.load.sessions} parallel sessions, ${r.load.size}-byte messages, ${r.load.messages.new} messages per run with a new`,
    `connection per message and ${r.load.messages.reuse} with reused connections; paths interleaved, ${r.load.reps} repetition(s). The`,
    'figure is the median rate (each run in brackets); the ratio is the median over repetitions of the rate',
    "divided by direct in the same repetition. Proxy CPU is the user + system time of all the path's proxy",
    'processes (both nodes and HAProxy for the pair; nginx master and worker) per message, median, with',
    'the share spent in user space (the rest is the kernel working for it: sockets, polling).',
    '',
    ...throughputTable(r),
    '',
    '## Latency added by the proxy',
    '',
    'Our load generator (test/bench/load-generator.ts): one command at a time, no pipelining, transactions',
    'started on an open-loop schedule; latency runs from the moment a transaction was due to the 250 after',
    'its final dot (new connections: connect, greeting and EHLO included). "Added" is the path minus direct.',
    '',
    ...(['new', 'reuse'] as const).flatMap((m) => r.latency[m].flatMap((l) => latencyTable(l, m))),
    '## Idle sessions',
    '',
  ];
  if (idle) {
    const rss = idle.rssHeld - idle.rssBefore;
    const heap = idle.heapHeld - idle.heapBefore;
    lines.push(
      `${idle.sessions} sessions held on one node (greeting and EHLO done, no transaction), opened in ${f1(idle.seconds)} s;`,
      `the node reported ${idle.activeReported} active sessions.`,
      '',
      '| | before | held | per session |',
      '| --- | ---: | ---: | ---: |',
      `| RSS (VmRSS) | ${mib(idle.rssBefore)} | ${mib(idle.rssHeld)} | ${kib(rss / idle.sessions)} |`,
      `| V8 heap used | ${mib(idle.heapBefore)} | ${mib(idle.heapHeld)} | ${kib(heap / idle.sessions)} |`,
      '',
    );
  } else {
    lines.push(`Not measured: ${r.idleError ?? 'no run'}`, '');
  }
  lines.push('## Connection management (issue 16)', '');
  if (r.connections) lines.push(...renderConnections(r.connections), '');
  else lines.push(`Not measured: ${r.connectionsError ?? 'no run (before issue 16)'}`, '');
  lines.push('## CPU profiles', '');
  for (const p of r.profiles) lines.push(...profileSection(p));
  lines.push(r.findings.trim(), '');
  return lines.join('\n');
}
