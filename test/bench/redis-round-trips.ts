// Redis work per session (issue 16, item 5): what one node sends to Redis for one SMTP session, and
// how many of those round trips the session waits for. Two configurations of one node on a real
// Redis: the ledger alone (inbound listener, no limits), and everything that counts in Redis on the
// hot path (submission listener with AUTH from an htpasswd file and its failed-attempt limits, the
// client limits of `shaping.limits`, the sender limits of `senders.limits`). For each:
// - commands: Redis MONITOR while N sessions run one after the other, top-level commands of the
//   node's connections (not those run inside scripts), named by their script (the SHA-1 of each
//   Lua file of packages/ledger) and the key they touch, per session; the periodic ones
//   (heartbeats, lease renewals) per second instead;
// - round trips waited for: the same sessions again through a relay that holds every Redis reply
//   for D ms; each step's median time (greeting, EHLO, AUTH, MAIL, RCPT, DATA, QUIT) minus the
//   direct one, divided by D, is the number of sequential Redis round trips in that step.
// Run: npm run build, then `node test/dist/bench/redis-round-trips.js [sessions] [delay ms]`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  makeTempDir,
  startProcess,
  startRedis,
  startWireBackend,
  type WireBackend,
  waitForPort,
} from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { holdingRelay } from '../helpers/holding-relay.js';
import { median } from './stats.js';

const HOST = '127.0.0.1';
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'packages/proxy/bin/smtp-lb.js');
const STEPS = ['greeting', 'EHLO', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'QUIT'] as const;
type Step = (typeof STEPS)[number];
/** Scripts a node runs on a timer, not per session. */
const PERIODIC = new Set(['ledger heartbeat', 'ledger node-beat', 'client-limits session-renew']);

/**
 * SHA-1 of every Lua script of packages/ledger, as ioredis sends it (EVALSHA), to its name; and the
 * first line of its comment, for the EVAL that follows a NOSCRIPT (MONITOR's text of it is escaped).
 */
function scriptNames(): Map<string, string> {
  const base = join(ROOT, 'packages/ledger/src/lua');
  const include = (n: string) => readFileSync(join(base, 'includes', `${n}.lua`), 'utf8');
  const names = new Map<string, string>();
  for (const [dir, group] of [
    ['', 'ledger'],
    ['client-limits', 'client-limits'],
    ['senders', 'senders'],
  ] as const) {
    for (const f of readdirSync(join(base, dir)).filter((x) => x.endsWith('.lua'))) {
      let lua = readFileSync(join(base, dir, f), 'utf8');
      if (dir === '') lua = lua.replace(/^-- @include ([a-z-]+)$/gm, (_, n: string) => include(n));
      const sha = createHash('sha1').update(lua).digest('hex');
      const name = `${group} ${f.replace(/-\d+\.lua$/, '')}`;
      names.set(sha, name);
      const first = lua.split('\n').find((l) => /[a-z]{4}/i.test(l));
      if (first) names.set(`text:${first.trim()}`, name);
    }
  }
  return names;
}

/** What a command is: its script and, for the shared counters, whose counter (from the key). */
function describe(args: string[], names: Map<string, string>): string {
  const cmd = args[0]!.toLowerCase();
  if (cmd !== 'evalsha' && cmd !== 'eval') return cmd;
  const byText = () => {
    for (const [k, v] of names) if (k.startsWith('text:') && args[1]!.includes(k.slice(5))) return v;
    return undefined;
  };
  const name = (cmd === 'eval' ? byText() : names.get(args[1]!)) ?? `${cmd} ${args[1]!.slice(0, 8)}`;
  const key = args[3] ?? '';
  const rate = /:rate:\{([a-z-]+)(?::[a-z]+)?:/.exec(key);
  if (rate) return `${name} (${rate[1]})`;
  if (name.startsWith('client-limits session'))
    return `${name} (${key.includes('{user:') ? 'user' : 'client'})`;
  return name;
}

interface Config {
  id: string;
  label: string;
  auth: boolean;
  yaml(port: number, sink: string, redis: string, users: string): string;
}

const CONFIGS: Config[] = [
  {
    id: 'ledger',
    label: 'ledger only (inbound listener, no limits)',
    auth: false,
    yaml: (port, sink, redis) => `node: { id: rt-ledger }
listeners:
  - { name: inbound, listen: "${HOST}:${port}", hostname: rt.bench.test, pool: default }
pools:
  default: { static: [{ address: "${sink}" }], tls: none }
ledger: { redis: "${redis}", keyPrefix: rt-ledger }
admin: { listen: "${HOST}:0" }
log: { level: warn }
`,
  },
  {
    id: 'all',
    label: 'ledger + AUTH failure limits + client limits + sender limits',
    auth: true,
    yaml: (port, sink, redis, users) => `node: { id: rt-all }
listeners:
  - name: submission
    listen: "${HOST}:${port}"
    hostname: rt.bench.test
    pool: default
    role: submission
    auth: { verify: file, file: "${users}", allowPlaintext: true }
pools:
  default: { static: [{ address: "${sink}" }], tls: none }
ledger: { redis: "${redis}", keyPrefix: rt-all }
shaping:
  limits:
    sessionsPerAddress: 1000
    sessionsPerPrefix: 1000
    connectionRate: { limit: 1000000, window: 1m }
    messageRate: { limit: 1000000, window: 1h }
senders:
  limits:
    messages: { limit: 1000000, window: 1h }
    recipients: { limit: 1000000, window: 1h }
    sessions: 1000
admin: { listen: "${HOST}:0" }
log: { level: warn }
`,
  },
];

const USER = 'alice@rt.bench.test';
const PASSWORD = 'alice-pw';

/** One session, one command at a time; the time of each step (from sending it to its reply). */
function session(port: number, auth: boolean): Promise<Partial<Record<Step, number>>> {
  const plain = Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64');
  const script: Array<[Step, string | undefined, number]> = [
    ['greeting', undefined, 220],
    ['EHLO', 'EHLO rt.client.test', 250],
    ...(auth ? ([['AUTH', `AUTH PLAIN ${plain}`, 235]] as Array<[Step, string, number]>) : []),
    ['MAIL', `MAIL FROM:<${auth ? USER : 'sender@rt.client.test'}>`, 250],
    ['RCPT', 'RCPT TO:<rcpt@rt.sink.test>', 250],
    ['DATA', 'DATA', 354],
    ['DATA', 'Subject: rt\r\n\r\nhello\r\n.', 250],
    ['QUIT', 'QUIT', 221],
  ];
  return new Promise((resolve, reject) => {
    const times: Partial<Record<Step, number>> = {};
    const s = net.connect({ host: HOST, port });
    s.setNoDelay(true);
    s.setEncoding('latin1');
    let buf = '';
    let i = 0;
    let since = performance.now();
    s.on('error', reject);
    s.on('data', (d: string) => {
      buf += d;
      for (;;) {
        const m = /^(\d{3})( [^\r\n]*)?\r\n/m.exec(buf);
        if (!m) return;
        buf = buf.slice(m.index + m[0].length);
        const [step, , want] = script[i]!;
        if (Number(m[1]) !== want) {
          s.destroy();
          reject(new Error(`${step}: ${m[0].trim()}`));
          return;
        }
        times[step] = (times[step] ?? 0) + performance.now() - since;
        i++;
        if (i === script.length) {
          s.destroy();
          resolve(times);
          return;
        }
        since = performance.now();
        s.write(`${script[i]![1]}\r\n`);
      }
    });
  });
}

async function startNodeWith(yaml: string, dir: string, name: string, port: number) {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  const proc = startProcess(name, process.execPath, [CLI, '--config', file]);
  await waitForPort(port, { process: proc, timeoutMs: 20_000 });
  return proc;
}

export interface RoundTripResult {
  id: string;
  label: string;
  sessions: number;
  /** Top-level commands per session, by what they are. */
  perSession: Record<string, number>;
  /** Periodic commands per second of the run. */
  periodicPerSecond: Record<string, number>;
  /** Sequential round trips waited for, per step. */
  waited: Partial<Record<Step, number>>;
}

async function measure(
  c: Config,
  sessions: number,
  delayMs: number,
  redisPort: number,
  backend: WireBackend,
  dir: string,
  users: string,
  names: Map<string, string>,
): Promise<RoundTripResult> {
  const admin = new Redis({ host: HOST, port: redisPort });
  const monitor = await admin.monitor();
  const log: Array<{ source: string; args: string[]; at: number }> = [];
  let recording = false;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (recording && source !== 'lua') log.push({ source, args, at: performance.now() });
  });
  const steps = async (port: number) => {
    const out: Array<Partial<Record<Step, number>>> = [];
    for (let i = 0; i < sessions; i++) out.push(await session(port, c.auth));
    return out;
  };
  try {
    // Direct: the commands, and the steps' times without added delay.
    const port = await freePort();
    const direct = await startNodeWith(
      c.yaml(port, backend.address, `redis://${HOST}:${redisPort}`, users),
      dir,
      `rt-${c.id}`,
      port,
    );
    let fast: Array<Partial<Record<Step, number>>>;
    let seconds: number;
    try {
      await steps(port); // warm-up: scripts loaded, connections made
      await delay(500);
      recording = true;
      const t0 = performance.now();
      fast = await steps(port);
      await delay(300); // releases after QUIT are not waited for
      recording = false;
      seconds = (performance.now() - t0) / 1000;
    } finally {
      await direct.stop();
    }
    const perSession: Record<string, number> = {};
    const periodic: Record<string, number> = {};
    for (const e of log) {
      const what = describe(e.args, names);
      const into = PERIODIC.has(what.replace(/ \(.*\)$/, '')) ? periodic : perSession;
      into[what] = (into[what] ?? 0) + 1;
    }
    for (const k of Object.keys(perSession)) perSession[k] = perSession[k]! / sessions;
    for (const k of Object.keys(periodic)) periodic[k] = periodic[k]! / seconds;

    // Through the delaying relay: the round trips each step waits for.
    const relay = await holdingRelay(redisPort, delayMs);
    const port2 = await freePort();
    const slow = await startNodeWith(
      c.yaml(port2, backend.address, `redis://${HOST}:${relay.port}`, users),
      dir,
      `rt-${c.id}-delayed`,
      port2,
    );
    let slowTimes: Array<Partial<Record<Step, number>>>;
    try {
      await steps(port2);
      slowTimes = await steps(port2);
    } finally {
      await slow.stop();
      await relay.close();
    }
    const waited: Partial<Record<Step, number>> = {};
    for (const step of STEPS) {
      const a = fast.map((t) => t[step]).filter((x): x is number => x !== undefined);
      const b = slowTimes.map((t) => t[step]).filter((x): x is number => x !== undefined);
      if (a.length === 0) continue;
      waited[step] = Math.max(0, (median(b) - median(a)) / delayMs);
    }
    return { id: c.id, label: c.label, sessions, perSession, periodicPerSecond: periodic, waited };
  } finally {
    monitor.disconnect();
    admin.disconnect();
  }
}

export async function runRoundTrips(sessions = 40, delayMs = 25): Promise<RoundTripResult[]> {
  const redis = await startRedis();
  // The wire recorder as the sink: no smtp-server greeting wait (100 ms) in the figures, as in earlier runs.
  const backend = await startWireBackend({ keepData: false });
  const dir = await makeTempDir('bench-rt');
  const users = join(dir.path, 'users');
  execFileSync('htpasswd', ['-cbB', '-C', '5', users, USER, PASSWORD], { stdio: 'ignore' });
  const names = scriptNames();
  const out: RoundTripResult[] = [];
  try {
    for (const c of CONFIGS)
      out.push(await measure(c, sessions, delayMs, redis.port, backend, dir.path, users, names));
  } finally {
    await backend.close();
    await redis.stop();
    await dir.remove();
  }
  return out;
}

export function renderRoundTrips(results: RoundTripResult[], delayMs: number): string[] {
  const lines: string[] = [];
  for (const r of results) {
    const total = Object.values(r.perSession).reduce((a, b) => a + b, 0);
    const waited = STEPS.filter((s) => r.waited[s] !== undefined);
    const waitedTotal = waited.reduce((n, s) => n + Math.round(r.waited[s]! * 10) / 10, 0);
    lines.push(
      `### ${r.label}`,
      '',
      `${r.sessions} sessions one after the other. Commands the node sent per session: ${total.toFixed(2)}; round trips the session waited for (${delayMs} ms added per Redis reply): ${waitedTotal.toFixed(1)}.`,
      '',
      '| command (script, counter) | per session |',
      '| --- | ---: |',
      ...Object.entries(r.perSession)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `| ${k} | ${v.toFixed(2)} |`),
      '',
      `| step | ${waited.join(' | ')} |`,
      `| --- | ${waited.map(() => '---:').join(' | ')} |`,
      `| round trips waited for | ${waited.map((s) => r.waited[s]!.toFixed(1)).join(' | ')} |`,
      '',
      `Periodic, per second of the run: ${
        Object.entries(r.periodicPerSecond)
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(', ') || 'none'
      }.`,
      '',
    );
  }
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sessions = Number(process.argv[2] ?? 40);
  const delayMs = Number(process.argv[3] ?? 25);
  runRoundTrips(sessions, delayMs).then(
    (r) => {
      process.stdout.write(`${renderRoundTrips(r, delayMs).join('\n')}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
