// Benchmark: 10 000 concurrent tarpitted sessions on one node (loopback, bounded). The node runs as
// its own process (the smtp-lb CLI); clients from 127.0.0.2-11 are over the connection rate and
// tarpitted (every reply held 2 min, longer than the run), probes from the allow-listed 127.0.0.200 are not. Reports the
// node's RSS per tarpitted session, its CPU while they wait, and the probes' latency (connect,
// greeting, EHLO, MAIL, RCPT, DATA, a message, QUIT) before and during the tarpit, as a ratio.
// Run: npm run build, then `node test/dist/bench/tarpit-sessions.js [sessions]`; it raises its
// own open-files limit (re-exec under `ulimit -n`, up to the hard limit).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort, startSmtpSink } from '@smtp-lb/testkit';

const SESSIONS = Number(process.argv[2] ?? 10_000);
/** Client and node run as two processes: each needs a descriptor per session, and a few more. */
const NOFILE = SESSIONS + 1000;
const TARPIT_DELAY = '2m';
const PROBES = 500;

// Each session is two descriptors here (client, node) plus the node's: raise the limit first.
if (process.env.TARPIT_BENCH_CHILD !== '1') {
  const soft = Number(spawnSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
  if (!(soft >= NOFILE)) {
    const me = fileURLToPath(import.meta.url);
    // Up to the hard limit (a container may not allow more; 10 000 sessions need ~11 000 each).
    const r = spawnSync(
      'bash',
      [
        '-c',
        `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "${process.execPath}" "${me}" ${SESSIONS}`,
      ],
      { stdio: 'inherit', env: { ...process.env, TARPIT_BENCH_CHILD: '1' } },
    );
    process.exit(r.status ?? 1);
  }
}

function procStat(pid: number): { rss: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
  // Fields after the command name (which may hold spaces): utime is 14th, stime 15th overall.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rss, cpuTicks: Number(rest[11]) + Number(rest[12]) };
}

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

async function metric(adminPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** Opens a connection from `from` and resolves once connected (the tarpitted greeting comes later). */
function open(port: number, from: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    s.once('connect', () => {
      s.removeListener('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** One whole untarpitted session; resolves with its duration in ms. */
function probe(port: number): Promise<number> {
  const steps = ['EHLO probe.test', 'MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test>', 'DATA'];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.200' });
    let buf = '';
    let step = -1;
    s.setEncoding('latin1');
    s.on('error', reject);
    s.on('data', (d: string) => {
      buf += d;
      for (;;) {
        const m = /^(\d{3}) [^\r\n]*\r\n/m.exec(buf);
        if (!m) return;
        buf = buf.slice(m.index + m[0].length);
        step++;
        if (step < steps.length) s.write(`${steps[step]}\r\n`);
        else if (step === steps.length) s.write('Subject: probe\r\n\r\nhello\r\n.\r\n');
        else if (step === steps.length + 1) s.write('QUIT\r\n');
        else {
          s.destroy();
          resolve(performance.now() - t0);
        }
      }
    });
  });
}

async function probes(port: number): Promise<{ p50: number; p90: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < PROBES; i++) times.push(await probe(port));
  times.sort((a, b) => a - b);
  const at = (q: number) => +times[Math.floor(times.length * q)]!.toFixed(2);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

async function main(): Promise<void> {
  const sink = await startSmtpSink({ backlog: 1024 });
  const port = await freePort();
  const adminPort = await freePort();
  const dir = tmpdir();
  const cfg = join(dir, `tarpit-bench-${process.pid}.yaml`);
  writeFileSync(
    cfg,
    `node: { id: tarpit-bench }
listeners:
  - name: inbound
    listen: 127.0.0.1:${port}
    hostname: mx.bench
    maxSessions: ${SESSIONS * 2}
pools:
  default:
    static: [{ address: ${sink.address}, maxConnections: 100 }]
    tls: none
admin: { listen: 127.0.0.1:${adminPort} }
log: { level: warn }
shaping:
  allow: [127.0.0.200]
  limits: { connectionRate: { limit: 1, window: 1h }, action: tarpit }
  tarpit: { delay: ${TARPIT_DELAY}, maxSessions: ${SESSIONS * 2} }
`,
  );
  const cli = fileURLToPath(new URL('../../../packages/proxy/bin/smtp-lb.js', import.meta.url));
  const node = spawn(process.execPath, [cli, '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  const clients: Socket[] = [];
  try {
    for (let i = 0; i < 100; i++) {
      if ((await fetch(`http://127.0.0.1:${adminPort}/healthz`).catch(() => undefined))?.ok) break;
      await delay(100);
    }
    const pid = node.pid!;
    // Warm up (JIT, one backend connection), then the baseline.
    await probes(port);
    const base = await probes(port);
    await delay(1000);
    const idle = procStat(pid);

    // One connection per client address spends its allowance (a rate of 1 per hour): every
    // session after it is tarpitted.
    for (let a = 2; a < 12; a++) (await open(port, `127.0.0.${a}`)).destroy();
    const t0 = Date.now();
    for (let i = 0; i < SESSIONS; i += 500) {
      const batch = Array.from({ length: Math.min(500, SESSIONS - i) }, (_, j) =>
        open(port, `127.0.0.${2 + ((i + j) % 10)}`),
      );
      clients.push(...(await Promise.all(batch)));
    }
    const openSeconds = (Date.now() - t0) / 1000;
    // Wait until the node has admitted them all into the tarpit.
    let tarpitted = 0;
    for (let i = 0; i < 100 && tarpitted < SESSIONS; i++) {
      tarpitted = await metric(adminPort, 'smtp_lb_tarpit_sessions_active');
      if (tarpitted < SESSIONS) await delay(200);
    }
    await delay(2000);
    const held = procStat(pid);
    // CPU while they only wait (no probes running), then the probes.
    const cpuStart = procStat(pid).cpuTicks;
    const w0 = Date.now();
    await delay(10_000);
    const waitSeconds = (Date.now() - w0) / 1000;
    const cpu = (procStat(pid).cpuTicks - cpuStart) / TICKS / waitSeconds;
    const during = await probes(port);
    const stillOpen = clients.filter((c) => !c.destroyed).length;
    const report = {
      sessions: SESSIONS,
      tarpittedReported: tarpitted,
      stillOpen,
      openSeconds,
      rssIdleMiB: +(idle.rss / 2 ** 20).toFixed(1),
      rssHeldMiB: +(held.rss / 2 ** 20).toFixed(1),
      rssPerSessionKiB: +((held.rss - idle.rss) / SESSIONS / 1024).toFixed(2),
      cpuWhileWaiting: `${(cpu * 100).toFixed(1)}% of one core over ${waitSeconds.toFixed(1)} s`,
      probeBaselineMs: base,
      probeDuringTarpitMs: during,
      latencyRatio: {
        p50: +(during.p50 / base.p50).toFixed(2),
        p90: +(during.p90 / base.p90).toFixed(2),
        p99: +(during.p99 / base.p99).toFixed(2),
      },
    };
    console.log(JSON.stringify(report, null, 2));
    if (tarpitted < SESSIONS || stillOpen < SESSIONS) process.exitCode = 1;
  } finally {
    for (const c of clients) c.destroy();
    node.kill('SIGINT');
    await new Promise((r) => node.once('exit', r));
    await sink.stop();
  }
}

await main();
