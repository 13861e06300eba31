// Connection management, side by side with HAProxy (issue 16): one backend capped at 10 connections
// (HAProxy `maxconn 10` on its server line, clients beyond it in HAProxy's queue; smtp-lb
// `maxConnections: 10`, sessions beyond it waiting for a slot at RCPT), and 200 clients that are slow
// the way real senders are: a pause of 1-2 s (seeded, uniform) after the greeting and after each reply
// before the next command, then a normal message right after the 354 (4 KiB) and QUIT after a pause.
// HAProxy binds the backend from the client's connect to its close; an SMTP-aware proxy needs it only
// for the transaction. Per path, for a fixed window: messages delivered per second in the steady part
// of the window, session times (connect to 221), the backend's highest concurrency and its connection
// seconds per delivered message (the backend's concurrency sampled every 50 ms), failures, the
// proxy's CPU. The
// backend is testkit's capture backend, which counts the connections it holds. Bounded: every client
// still running at the end of the window is cut. Loopback only.
// Run: npm run build, then `node test/dist/bench/connection-management.js [window seconds] [clients]`;
// `npm run bench` runs it too (a section of BENCHMARKS.md).
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { makeTempDir, mulberry32, startRedis, startWireBackend, type WireBackend } from '@smtp-lb/testkit';
import { message } from './load-generator.js';
import { groupCpu } from './process-cpu.js';
import { percentile } from './stats.js';
import { startHaproxy, startNode, type Target } from './targets.js';

export interface ConnectionOptions {
  clients: number;
  /** The backend's cap, on both sides. */
  cap: number;
  windowMs: number;
  /** Deliveries before this are the start-up (no client has reached DATA yet): not in the rate. */
  warmupMs: number;
  /** Clients connect spread over this long from the start. */
  arrivalMs: number;
  pauseMs: [number, number];
  size: number;
  /** Queue timeout on both sides: longer than the window, so nobody is refused for waiting. */
  queueTimeout: string;
  seed: number;
}

export const DEFAULT_CONNECTION_OPTIONS: ConnectionOptions = {
  clients: 200,
  cap: 10,
  windowMs: 40_000,
  warmupMs: 10_000,
  arrivalMs: 2_000,
  pauseMs: [1000, 2000],
  size: 4096,
  queueTimeout: '5m',
  seed: 16,
};

export interface ConnectionPathResult {
  id: string;
  label: string;
  /** Sessions whose message got its 250 within the window. */
  delivered: number;
  /** Deliveries per second between warm-up and the end of the window. */
  rate: number;
  /** Sessions that got an unexpected reply or lost their connection, by what happened. */
  failures: Record<string, number>;
  /** Sessions still running when the window closed (cut). */
  unfinished: number;
  /** Connect to 221 over all sessions; Infinity where the percentile falls on an unfinished one. */
  p50Ms: number;
  p95Ms: number;
  /** Time from connect to the greeting: how long the proxy kept a client waiting before it. */
  greetingP50Ms: number;
  backendMax: number;
  backendMessages: number;
  /** Backend connection time per delivered message, between warm-up and the end of the window. */
  backendSecondsPerMessage: number;
  /** Proxy CPU (user + system, all its processes) over the window, as a share of one core. */
  proxyCpuShare: number;
  error?: string;
}

export interface ConnectionResults {
  options: ConnectionOptions;
  paths: ConnectionPathResult[];
}

interface SessionRecord {
  startedAt: number;
  greetedAt?: number;
  deliveredAt?: number;
  endedAt?: number;
  failure?: string;
}

const HOST = '127.0.0.1';

/** One slow sender: pauses after the greeting and between commands; resolves when the session ends. */
function slowSession(
  port: number,
  rec: SessionRecord,
  pause: () => number,
  body: Buffer,
  cut: AbortSignal,
): Promise<void> {
  const steps = [
    'EHLO slow.bench.test',
    'MAIL FROM:<sender@slow.bench.test>',
    'RCPT TO:<rcpt@sink.bench.test>',
  ];
  return new Promise((resolve) => {
    const s = net.connect({ port, host: HOST });
    s.setNoDelay(true);
    let buf = '';
    let stage = 0; // replies seen so far
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (failure?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cut.removeEventListener('abort', onCut);
      if (failure) rec.failure = failure;
      else rec.endedAt = performance.now();
      s.destroy();
      resolve();
    };
    const onCut = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve();
    };
    cut.addEventListener('abort', onCut);
    const later = (line: string) => {
      timer = setTimeout(() => s.write(`${line}\r\n`), pause());
    };
    s.setEncoding('latin1');
    s.on('error', (err: NodeJS.ErrnoException) => finish(`connection ${err.code ?? 'error'}`));
    s.on('close', () => finish(stage === 0 ? 'closed before the greeting' : `closed after reply ${stage}`));
    s.on('data', (d: string) => {
      buf += d;
      for (;;) {
        // The last line of a reply: three digits and a space.
        const m = /^(\d{3})( [^\r\n]*)?\r\n/m.exec(buf);
        if (!m) return;
        buf = buf.slice(m.index + m[0].length);
        const code = Number(m[1]);
        stage++;
        const want = stage === 1 ? 220 : stage === 5 ? 354 : stage === 7 ? 221 : 250;
        if (code !== want) {
          finish(`${code} to step ${stage}`);
          return;
        }
        if (stage === 1) {
          rec.greetedAt = performance.now();
          later(steps[0]!);
        } else if (stage <= 3) later(steps[stage - 1]!);
        else if (stage === 4) later('DATA');
        else if (stage === 5) s.write(body);
        else if (stage === 6) {
          rec.deliveredAt = performance.now();
          later('QUIT');
        } else {
          finish();
          return;
        }
      }
    });
  });
}

async function runPath(
  id: string,
  label: string,
  target: Target,
  backend: WireBackend,
  o: ConnectionOptions,
): Promise<ConnectionPathResult> {
  const random = mulberry32(o.seed);
  const [lo, hi] = o.pauseMs;
  const pause = () => lo + random() * (hi - lo);
  const body = message(o.size);
  const records: SessionRecord[] = [];
  const cut = new AbortController();
  const cpuBefore = await groupCpu(target.groups);
  const t0 = performance.now();
  // Backend connections integrated over time (sampled), for connection seconds per message.
  let heldMs = 0;
  let lastSample = t0;
  const sampler = setInterval(() => {
    const now = performance.now();
    if (now - t0 >= o.warmupMs) heldMs += backend.current * (now - lastSample);
    lastSample = now;
  }, 50);
  const sessions: Array<Promise<void>> = [];
  for (let i = 0; i < o.clients; i++) {
    const at = t0 + (i * o.arrivalMs) / o.clients;
    const wait = at - performance.now();
    if (wait > 0) await delay(wait);
    const rec: SessionRecord = { startedAt: performance.now() };
    records.push(rec);
    sessions.push(slowSession(target.port, rec, pause, body, cut.signal));
  }
  await Promise.race([Promise.all(sessions), delay(Math.max(0, t0 + o.windowMs - performance.now()))]);
  const end = performance.now();
  clearInterval(sampler);
  heldMs += backend.current * (end - lastSample);
  cut.abort();
  await Promise.all(sessions);
  const cpuAfter = await groupCpu(target.groups);

  const failures: Record<string, number> = {};
  for (const r of records) if (r.failure) failures[r.failure] = (failures[r.failure] ?? 0) + 1;
  const delivered = records.filter((r) => r.deliveredAt !== undefined);
  const steady = delivered.filter((r) => r.deliveredAt! - t0 >= o.warmupMs).length;
  const times = records.map((r) =>
    r.endedAt !== undefined ? r.endedAt - r.startedAt : r.failure ? Number.NaN : Number.POSITIVE_INFINITY,
  );
  const finite = times.filter((x) => !Number.isNaN(x));
  const greet = records.filter((r) => r.greetedAt !== undefined).map((r) => r.greetedAt! - r.startedAt);
  const greetAll = [...greet, ...Array(records.length - greet.length).fill(Number.POSITIVE_INFINITY)];
  const measuredS = Math.max(0.001, (end - t0 - o.warmupMs) / 1000);
  const cpu = cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system;
  return {
    id,
    label,
    delivered: delivered.length,
    rate: steady / measuredS,
    failures,
    unfinished: records.filter((r) => r.endedAt === undefined && !r.failure).length,
    p50Ms: percentile(finite, 50),
    p95Ms: percentile(finite, 95),
    greetingP50Ms: percentile(greetAll, 50),
    backendMax: backend.maxConcurrent,
    backendMessages: backend.messages.length,
    backendSecondsPerMessage: steady > 0 ? heldMs / 1000 / steady : Number.NaN,
    proxyCpuShare: cpu / ((end - t0) / 1000),
  };
}

type Starter = (backendPort: number, dir: string) => Promise<Target>;

/** HAProxy, then smtp-lb in memory, then smtp-lb on Redis; each in front of a backend of its own. */
export async function runConnectionManagement(
  options: Partial<ConnectionOptions> = {},
  log: (line: string) => void = () => {},
): Promise<ConnectionResults> {
  const o = { ...DEFAULT_CONNECTION_OPTIONS, ...options };
  const dir = await makeTempDir('bench-connections');
  const running: Array<{ stop(): Promise<void> }> = [];
  const paths: ConnectionPathResult[] = [];
  try {
    const redis = await startRedis();
    running.push(redis);
    const variants: Array<[string, string, Starter]> = [
      [
        'haproxy',
        `HAProxy TCP, server maxconn ${o.cap}, queue`,
        (p, d) => startHaproxy('haproxy-conn', d, [p], { maxconn: o.cap, queueTimeout: o.queueTimeout }),
      ],
      [
        'node-mem',
        `smtp-lb, maxConnections ${o.cap}, in-memory ledger`,
        (p, d) =>
          startNode(d, {
            name: 'conn-mem',
            sinkPort: p,
            maxConnections: o.cap,
            queueTimeout: o.queueTimeout,
          }),
      ],
      [
        'node-redis',
        `smtp-lb, maxConnections ${o.cap}, Redis ledger`,
        (p, d) =>
          startNode(d, {
            name: 'conn-redis',
            sinkPort: p,
            maxConnections: o.cap,
            queueTimeout: o.queueTimeout,
            redis: redis.url,
            keyPrefix: 'conn',
          }),
      ],
    ];
    for (const [id, label, start] of variants) {
      // The wire recorder as the sink: no smtp-server greeting wait (100 ms) in the figures, as in earlier runs.
      const backend = await startWireBackend({ keepData: false, hostname: 'sink.bench.test' });
      let target: Target | undefined;
      try {
        target = await start(backend.port, dir.path);
        const r = await runPath(id, label, target, backend, o);
        paths.push(r);
        log(
          `connections ${id.padEnd(10)} ${r.rate.toFixed(2)} msg/s, ${r.delivered} delivered, backend max ${r.backendMax}, ${r.backendSecondsPerMessage.toFixed(2)} backend s/msg, p50 ${(r.p50Ms / 1000).toFixed(1)} s, unfinished ${r.unfinished}, failures ${JSON.stringify(r.failures)}`,
        );
      } catch (err) {
        const message = (err as Error).message.split('\n')[0]!;
        log(`connections ${id} failed: ${message}`);
        paths.push({
          id,
          label,
          delivered: 0,
          rate: Number.NaN,
          failures: {},
          unfinished: 0,
          p50Ms: Number.NaN,
          p95Ms: Number.NaN,
          greetingP50Ms: Number.NaN,
          backendMax: backend.maxConcurrent,
          backendMessages: backend.messages.length,
          backendSecondsPerMessage: Number.NaN,
          proxyCpuShare: Number.NaN,
          error: message,
        });
      } finally {
        await target?.stop();
        await backend.close();
      }
    }
  } finally {
    for (const p of running.reverse()) await p.stop().catch(() => {});
    await dir.remove();
  }
  return { options: o, paths };
}

const secs = (ms: number) =>
  Number.isNaN(ms) ? '—' : Number.isFinite(ms) ? (ms / 1000).toFixed(1) : '> window';

/** The section of BENCHMARKS.md (also printed by the standalone run). */
export function renderConnections(r: ConnectionResults): string[] {
  const o = r.options;
  const base = r.paths.find((p) => p.id === 'haproxy');
  const lines = [
    `${o.clients} clients against one backend capped at ${o.cap} connections (testkit's capture backend, which counts`,
    `the connections it holds), each client one session: a pause of ${o.pauseMs[0] / 1000}-${o.pauseMs[1] / 1000} s (seeded, uniform) after the`,
    `greeting and after each reply before the next command (EHLO, MAIL, RCPT, DATA, QUIT), the ${o.size}-byte message`,
    `right after the 354. Clients arrive over ${o.arrivalMs / 1000} s; the window is ${o.windowMs / 1000} s, and clients still running at its end`,
    `are cut. The rate counts deliveries (250 after the dot) after the first ${o.warmupMs / 1000} s; backend seconds per message is`,
    "the backend's connection count, sampled every 50 ms, integrated over the same part and divided by its deliveries.",
    `Queue timeout ${o.queueTimeout} on both sides (HAProxy \`timeout queue\`, smtp-lb \`admission.queueTimeout\`), so nobody is`,
    'refused for waiting within the window. Session time: connect to 221 over all sessions ("> window": the',
    'percentile falls on a session still running at the end). One run per path, one after the other: the',
    "figures are set by the clients' pauses, not by CPU.",
    '',
    '| path | msg/s | ratio to HAProxy | delivered in window | backend highest concurrency | backend s per message | session p50 s | session p95 s | greeting p50 s | unfinished | failures | proxy CPU, share of one core |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
  ];
  for (const p of r.paths) {
    if (p.error) {
      lines.push(`| ${p.label} | not measured: ${p.error} | | | | | | | | | | |`);
      continue;
    }
    const failures = Object.entries(p.failures)
      .map(([k, v]) => `${v} × ${k}`)
      .join(', ');
    const ratio = base && !base.error ? (p.rate / base.rate).toFixed(2) : '—';
    lines.push(
      `| ${p.label} | ${p.rate.toFixed(2)} | ${ratio} | ${p.delivered} / ${o.clients} | ${p.backendMax} | ${p.backendSecondsPerMessage.toFixed(2)} | ${secs(p.p50Ms)} | ${secs(p.p95Ms)} | ${secs(p.greetingP50Ms)} | ${p.unfinished} | ${failures || 'none'} | ${Number.isFinite(p.proxyCpuShare) ? `${(p.proxyCpuShare * 100).toFixed(1)} %` : '—'} |`,
    );
  }
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const windowS = Number(process.argv[2] ?? DEFAULT_CONNECTION_OPTIONS.windowMs / 1000);
  const clients = Number(process.argv[3] ?? DEFAULT_CONNECTION_OPTIONS.clients);
  runConnectionManagement({ windowMs: windowS * 1000, clients }, (l) => process.stdout.write(`${l}\n`)).then(
    (r) => {
      process.stdout.write(`${renderConnections(r).join('\n')}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
