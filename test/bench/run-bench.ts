// `npm run bench`: starts the sink, Redis and every path of issue 7 on free loopback ports, runs
// smtp-source through them interleaved and repeated, measures added latency with our load generator,
// holds N idle sessions on one node, profiles a node under the new-connection load, runs the
// connection-management comparison with HAProxy (connection-management.ts), and writes BENCHMARKS.md. Everything started here is stopped in `finally` (and by testkit's exit guard).
// `--quick` runs a small version (one repetition, small counts) to check the harness itself;
// `--render FILE` only writes BENCHMARKS.md again from a results.json (after editing findings.md);
// `--no-connections` leaves out the connection-management part (about 2.5 minutes).
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  makeTempDir,
  type RedisServer,
  type SmtpSink,
  startRedis,
  startSmtpSink,
} from '@smtp-lb/testkit';
import { type ConnectionResults, runConnectionManagement } from './connection-management.js';
import { summarizeProfile } from './cpu-profile.js';
import { holdIdleSessions } from './idle-sessions.js';
import { measureLatency } from './load-generator.js';
import { groupCpu } from './process-cpu.js';
import {
  type LatencyLevel,
  type LatencyRow,
  type Mode,
  type PathResult,
  type Results,
  renderReport,
} from './report.js';
import { runSmtpSource, type SourceLoad, sourceArgs } from './smtp-source.js';
import { median } from './stats.js';
import { startHaproxy, startNginx, startNode, startNodePipe, type Target } from './targets.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODES: Mode[] = ['new', 'reuse'];

const quick = process.argv.includes('--quick');
const connectionsToo = !process.argv.includes('--no-connections');
const renderArg = process.argv.indexOf('--render');
const outArg = process.argv.indexOf('--out');
const OUT = outArg > 0 ? path.resolve(process.argv[outArg + 1]!) : path.join(ROOT, 'BENCHMARKS.md');

const SESSIONS = 20;
const SIZE = 4096;
const REPS = quick ? 1 : 3;
const MESSAGES: Record<Mode, number> = quick ? { new: 300, reuse: 600 } : { new: 1500, reuse: 4000 };
const WARMUP: Record<Mode, number> = { new: 200, reuse: 400 };
const LATENCY_MS = quick ? 3000 : 5000;
const IDLE_SESSIONS = quick ? 2000 : 10_000;
const SOURCE_TIMEOUT_MS = 180_000;

function log(line: string): void {
  process.stdout.write(`bench: ${line}\n`);
}

function version(cmd: string, args: string[], pattern: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return pattern.exec(out)?.[1] ?? out.trim();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    const text = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    return pattern.exec(text)?.[1] ?? 'unknown';
  }
}

function loadavg(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

// Others may use this machine during a run: its load before and after is part of the record.
const loadStart = loadavg();
// The commit the run measured (scripts/bench.sh builds the work tree as it is), and whether the built
// packages changed while it ran: the work tree is shared. Node processes load their code when they
// start, so a rebuild matters for the nodes started after it (profiles, idle sessions).
async function buildStamp(): Promise<number> {
  let newest = 0;
  for (const pkg of await readdir(path.join(ROOT, 'packages'))) {
    const dir = path.join(ROOT, 'packages', pkg, 'dist/src');
    const files = await readdir(dir).catch(() => [] as string[]);
    for (const f of files.filter((x) => x.endsWith('.js'))) {
      newest = Math.max(newest, (await stat(path.join(dir, f))).mtimeMs);
    }
  }
  return newest;
}

const build = version(
  'git',
  ['-C', ROOT, 'describe', '--always', '--dirty=, with uncommitted changes'],
  /^(.+)$/m,
);

function machine(rebuilt: boolean): Record<string, string> {
  const cpus = os.cpus();
  // nginx -v prints to stderr; execFileSync only returns stdout, hence the shell redirect.
  return {
    nproc: String(os.availableParallelism()),
    CPU: `${cpus[0]?.model ?? 'unknown'} (${cpus.length} logical)`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    'Node.js': process.version,
    Postfix: version('postconf', ['-d', 'mail_version'], /mail_version = (\S+)/),
    HAProxy: version('haproxy', ['-v'], /version (\S+)/),
    nginx: version('sh', ['-c', 'nginx -v 2>&1'], /nginx\/(\S+)/),
    Redis: version('redis-server', ['--version'], /v=(\S+)/),
    'smtp-lb build': `${build}${rebuilt ? '; **rebuilt by someone during the run: the profiles and idle sessions may have run a newer build than the rest**' : ''}`,
    'load average at start / end': `${loadStart} / ${loadavg()}`,
  };
}

function openFilesLimit(): number {
  try {
    const limits = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
    return limits === 'unlimited' ? Number.POSITIVE_INFINITY : Number(limits);
  } catch {
    return 0;
  }
}

interface Path {
  id: string;
  label: string;
  port: number;
  /** Process groups of the proxy (none for direct). */
  groups: number[];
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const stampStart = await buildStamp();
  const dir = await makeTempDir('bench');
  const running: Array<{ stop(): Promise<void> }> = [];
  const nginxModule = process.env.NGINX_MAIL_MODULE ?? '/usr/lib/nginx/modules/ngx_mail_module.so';
  try {
    const sink: SmtpSink = await startSmtpSink({ backlog: 1024 });
    running.push(sink);
    log(`smtp-sink on ${sink.port}`);

    const results: PathResult[] = [];
    const paths: Path[] = [];
    const add = async (id: string, label: string, start: () => Promise<Target | number>) => {
      const r: PathResult = {
        id,
        label,
        rates: { new: [], reuse: [] },
        ratios: { new: [], reuse: [] },
        cpuUs: { new: [], reuse: [] },
        userShare: { new: [], reuse: [] },
      };
      results.push(r);
      try {
        const t = await start();
        if (typeof t === 'number') paths.push({ id, label, port: t, groups: [] });
        else {
          running.push(t);
          paths.push({ id, label, port: t.port, groups: t.groups });
        }
        log(`${id} ready`);
      } catch (err) {
        r.error = (err as Error).message.split('\n')[0];
        log(`${id} not started: ${(err as Error).message}`);
      }
    };

    let redis: RedisServer | undefined;
    const needRedis = async () => {
      if (!redis) {
        redis = await startRedis();
        running.push(redis);
      }
      return redis.url;
    };

    await add('direct', 'direct to smtp-sink', async () => sink.port);
    await add('haproxy', 'HAProxy TCP, leastconn, nbthread 1', () =>
      startHaproxy('haproxy', dir.path, [sink.port]),
    );
    await add('nginx', 'nginx mail proxy, smtp_auth none', () =>
      startNginx(dir.path, sink.port, nginxModule),
    );
    await add('node-pipe', 'Node.js TCP pipe, no SMTP (reference)', () =>
      startNodePipe('node-pipe', sink.port),
    );
    await add('node-mem', 'smtp-lb, one node, in-memory ledger', () =>
      startNode(dir.path, { name: 'node-mem', sinkPort: sink.port }),
    );
    await add('node-redis', 'smtp-lb, one node, Redis ledger', async () =>
      startNode(dir.path, {
        name: 'node-redis',
        sinkPort: sink.port,
        redis: await needRedis(),
        keyPrefix: 'one',
      }),
    );
    await add('pair', 'smtp-lb, two nodes behind HAProxy, shared Redis', async () => {
      const url = await needRedis();
      const a = await startNode(dir.path, {
        name: 'pair-a',
        sinkPort: sink.port,
        redis: url,
        keyPrefix: 'pair',
      });
      running.push(a);
      const b = await startNode(dir.path, {
        name: 'pair-b',
        sinkPort: sink.port,
        redis: url,
        keyPrefix: 'pair',
      });
      running.push(b);
      const lb = await startHaproxy('haproxy-pair', dir.path, [a.port, b.port]);
      return { ...lb, groups: [...a.groups, ...b.groups, ...lb.groups] };
    });

    const load = (mode: Mode, messages: number): SourceLoad => ({
      sessions: SESSIONS,
      messages,
      size: SIZE,
      reuse: mode === 'reuse',
    });

    log('warm-up');
    for (const p of paths) {
      for (const mode of MODES) {
        try {
          await runSmtpSource(load(mode, WARMUP[mode]), p.port, SOURCE_TIMEOUT_MS);
        } catch (err) {
          const r = results.find((x) => x.id === p.id)!;
          r.error = (err as Error).message.split('\n')[0];
          log(`${p.id} failed its warm-up: ${(err as Error).message}`);
        }
      }
    }
    const measured = paths.filter((p) => !results.find((x) => x.id === p.id)!.error);

    for (let rep = 0; rep < REPS; rep++) {
      const modes = rep % 2 === 0 ? MODES : [...MODES].reverse();
      for (const mode of modes) {
        // Rotate the order each repetition, so no path always runs right after the same one.
        const order = measured.map((_, i) => measured[(i + rep) % measured.length]!);
        const rates = new Map<string, number>();
        for (const p of order) {
          const r = results.find((x) => x.id === p.id)!;
          if (r.error) continue;
          try {
            const before = await groupCpu(p.groups);
            const run = await runSmtpSource(load(mode, MESSAGES[mode]), p.port, SOURCE_TIMEOUT_MS);
            const after = await groupCpu(p.groups);
            const user = after.user - before.user;
            const cpu = user + after.system - before.system;
            const cpuUs = (cpu * 1e6) / MESSAGES[mode];
            rates.set(p.id, run.rate);
            r.rates[mode].push(run.rate);
            r.cpuUs[mode].push(cpuUs);
            if (cpu > 0) r.userShare[mode].push(user / cpu);
            log(
              `rep ${rep + 1} ${mode.padEnd(5)} ${p.id.padEnd(14)} ${run.rate.toFixed(1)} msg/s, proxy CPU ${cpuUs.toFixed(0)} µs/msg`,
            );
          } catch (err) {
            r.error = (err as Error).message.split('\n')[0];
            log(`${p.id} failed: ${(err as Error).message}`);
          }
        }
        const direct = rates.get('direct');
        for (const [id, rate] of rates) {
          if (direct) results.find((x) => x.id === id)!.ratios[mode].push(rate / direct);
        }
      }
    }

    const latency: Results['latency'] = { new: [], reuse: [] };
    const latencyPaths = measured.filter((p) => ['direct', 'haproxy', 'node-mem'].includes(p.id));
    for (const mode of MODES) {
      // The issue's load (half of direct), then half of the node's own rate: the first shows whether
      // the node keeps up at all, the second what it adds when it does.
      for (const basis of ['direct', 'node-mem']) {
        const rate = 0.5 * median(results.find((x) => x.id === basis)!.rates[mode]);
        const level: LatencyLevel = { basis, rate, durationMs: LATENCY_MS, rows: [] };
        latency[mode].push(level);
        for (const p of latencyPaths) {
          const row: LatencyRow = { id: p.id, label: p.label };
          level.rows.push(row);
          if (!Number.isFinite(rate)) {
            row.error = `no ${basis} throughput to take 50 % of`;
            continue;
          }
          try {
            row.run = await measureLatency({
              port: p.port,
              rate,
              durationMs: LATENCY_MS,
              reuse: mode === 'reuse',
              connections: SESSIONS,
              size: SIZE,
              maxInFlight: 200,
            });
            const x = row.run;
            log(
              `latency ${mode.padEnd(5)} ${rate.toFixed(0).padStart(5)}/s ${p.id.padEnd(14)} p50 ${x.p50Ms.toFixed(2)} ms p99 ${x.p99Ms.toFixed(2)} ms (${x.completed}/${x.offered})`,
            );
          } catch (err) {
            row.error = (err as Error).message;
            log(`latency ${mode} ${p.id} failed: ${row.error}`);
          }
        }
      }
    }

    // The remaining phases each start a fresh node of their own; the others are no longer needed.
    const laterStamp = await buildStamp();
    while (running.length > 1) await running.pop()!.stop();

    const profiles: Results['profiles'] = [];
    for (const [name, title, mode] of [
      ['node-profiled', 'One node, in-memory ledger, new connection per message', 'new'],
      ['node-profiled-reuse', 'One node, in-memory ledger, connections reused', 'reuse'],
    ] as const) {
      const profDir = path.join(dir.path, name);
      const keep = path.join(HERE, `${name}.cpuprofile`);
      const entry: Results['profiles'][number] = { title, file: path.relative(ROOT, keep) };
      profiles.push(entry);
      try {
        await mkdir(profDir);
        const node = await startNode(dir.path, {
          name,
          sinkPort: sink.port,
          nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir],
        });
        let fromUs: number;
        try {
          await runSmtpSource(load(mode, WARMUP[mode]), node.port, SOURCE_TIMEOUT_MS);
          fromUs = Number(process.hrtime.bigint() / 1000n);
          await runSmtpSource(load(mode, MESSAGES[mode]), node.port, SOURCE_TIMEOUT_MS);
        } finally {
          // SIGTERM drains and exits; Node writes the profile on exit.
          await node.stop();
        }
        const file = (await readdir(profDir)).find((f) => f.endsWith('.cpuprofile'));
        if (!file) throw new Error('the node wrote no .cpuprofile');
        await copyFile(path.join(profDir, file), keep);
        entry.summary = await summarizeProfile(keep, ROOT, { fromUs });
        log(`profile ${name}: idle ${(entry.summary.idleShare * 100).toFixed(1)} %`);
      } catch (err) {
        entry.error = (err as Error).message;
        log(`profile ${name} failed: ${entry.error}`);
      }
    }

    let idle: Results['idle'];
    let idleError: string | undefined;
    const limit = openFilesLimit();
    if (limit < IDLE_SESSIONS + 1000) {
      idleError = `open-files limit ${limit} is below ${IDLE_SESSIONS + 1000}; run through scripts/bench.sh (it raises ulimit -n)`;
    } else {
      try {
        const adminPort = await freePort();
        const node = await startNode(dir.path, {
          name: 'node-idle',
          sinkPort: sink.port,
          maxSessions: IDLE_SESSIONS + 1000,
          adminPort,
        });
        try {
          // Warm the node up (code compiled, pools allocated) before the baseline reading.
          await runSmtpSource(load('new', WARMUP.new), node.port, SOURCE_TIMEOUT_MS);
          await delay(1000);
          idle = await holdIdleSessions(node.port, node.process!.pid, adminPort, IDLE_SESSIONS, 500);
          log(
            `idle: ${((idle.rssHeld - idle.rssBefore) / idle.sessions / 1024).toFixed(1)} KiB RSS per session`,
          );
        } finally {
          await node.stop();
        }
      } catch (err) {
        idleError = (err as Error).message;
        log(`idle sessions failed: ${idleError}`);
      }
    }

    let connections: ConnectionResults | undefined;
    let connectionsError: string | undefined;
    if (connectionsToo) {
      try {
        connections = await runConnectionManagement(quick ? { clients: 50, windowMs: 20_000 } : {}, log);
      } catch (err) {
        connectionsError = (err as Error).message;
        log(`connection management failed: ${connectionsError}`);
      }
    } else connectionsError = 'left out (`--no-connections`)';

    const findings = await readFindings();
    const srcNew = ['smtp-source', ...sourceArgs(load('new', MESSAGES.new), 0)]
      .join(' ')
      .replace(':0', ':PORT');
    const srcReuse = ['smtp-source', ...sourceArgs(load('reuse', MESSAGES.reuse), 0)]
      .join(' ')
      .replace(':0', ':PORT');
    const rebuilt = laterStamp !== stampStart;
    if (rebuilt) log('warning: the packages were rebuilt during the run (see the machine table)');
    const results_: Results = {
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      seconds: (Date.now() - t0) / 1000,
      machine: machine(rebuilt),
      load: { sessions: SESSIONS, size: SIZE, messages: MESSAGES, reps: REPS },
      commands: [
        `\`npm run bench\` = \`bash scripts/bench.sh\` (installs nginx-light + libnginx-mod-mail when missing, raises \`ulimit -n\` (65536, or the hard limit), \`tsc -b test\`, \`node test/dist/bench/run-bench.js\`)${quick ? ', here with `--quick`' : ''}`,
        `load, new connection per message: \`${srcNew}\``,
        `load, reused connections: \`${srcReuse}\``,
        '`smtp-sink -u nobody 127.0.0.1:PORT 1024` (one sink behind every path; it offers XCLIENT and PIPELINING)',
        'HAProxy: `haproxy -db -f FILE`, `nbthread 1`, `mode tcp`, `balance leastconn` (test/bench/targets.ts `haproxyConfig`)',
        'nginx: `nginx -e stderr -p DIR -c FILE`, `worker_processes 1`, mail `protocol smtp`, `smtp_auth none`, `xclient on`, auth_http answered by a node HTTP server in the bench process (`Auth-Status: OK`, `Auth-Server`, `Auth-Port`) (`nginxConfig`)',
        'smtp-lb: `npx smtp-lb --config FILE` (the bench starts its bin, packages/proxy/bin/smtp-lb.js, with its own node and no npx in between), one listener, one static pool (the sink), `tls: none`, `xclient: auto` (default), `log.level: warn`, `defaultMaxConnections: 1000`; Redis paths add `ledger.redis` (`nodeConfig`)',
        `profiles: \`node --cpu-prof\` on a fresh node under the load above (a warm-up run first; only samples from the measured run are counted); the .cpuprofile files are kept in test/dist/bench/`,
        "connection management: test/bench/connection-management.ts (also alone: `node test/dist/bench/connection-management.js [window seconds] [clients]`); HAProxy as above with `maxconn 10` on its server line and `timeout queue`; smtp-lb as above with `defaultMaxConnections: 10` and `admission.queueTimeout`; the backend is testkit's capture backend",
      ],
      paths: results,
      latency,
      ...(idle ? { idle } : {}),
      ...(idleError ? { idleError } : {}),
      profiles,
      ...(connections ? { connections } : {}),
      ...(connectionsError ? { connectionsError } : {}),
      findings,
    };
    await writeReport(results_);
    await writeFile(path.join(HERE, 'results.json'), `${JSON.stringify(results_, null, 2)}\n`);
    log(`wrote ${path.relative(process.cwd(), OUT) || OUT} in ${results_.seconds.toFixed(0)} s`);
    for (const r of results) {
      if (r.error) log(`${r.label}: ${r.error}`);
      else
        log(
          `${r.label}: ${MODES.map((m) => `${m} ${median(r.ratios[m]).toFixed(2)} × direct, ${median(r.cpuUs[m]).toFixed(0)} µs CPU/msg`).join('; ')}`,
        );
    }
  } finally {
    for (const p of running.reverse()) await p.stop().catch(() => {});
    await dir.remove();
  }
}

/** The repository's formatter aligns Markdown tables; a written report must pass `biome check`. */
function writeReport(results: Results): Promise<void> {
  return writeFile(OUT, renderReport(results)).then(() => {
    try {
      execFileSync(path.join(ROOT, 'node_modules/.bin/biome'), ['format', '--write', OUT], {
        stdio: 'ignore',
      });
    } catch (err) {
      log(`could not format ${OUT} with biome: ${(err as Error).message}`);
    }
  });
}

function readFindings(): Promise<string> {
  return readFile(path.join(ROOT, 'test/bench/findings.md'), 'utf8');
}

async function render(file: string): Promise<void> {
  const results = JSON.parse(await readFile(file, 'utf8')) as Results;
  await writeReport({ ...results, findings: await readFindings() });
  log(`wrote ${OUT} from ${file}`);
}

(renderArg > 0 ? render(path.resolve(process.argv[renderArg + 1]!)) : main()).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
