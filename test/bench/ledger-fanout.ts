// Ledger fan-out: 8, then 16 node processes share one Redis at a fixed total session rate; each
// session takes a slot on one of 16 backends (15 with room to spare, one capped at 2 so that sessions
// wait there), holds it 10 ms and gives it back. Per configuration: release messages each node
// received from other nodes per second, Redis commands and Redis CPU per session. The ledger of this
// tree runs against the ledger of a base commit (default: the last one before per-backend release
// channels), built from `git archive` into test/dist/bench/, in the same run, interleaved.
// Run: node test/dist/bench/ledger-fanout.js [seconds] [sessions/s] [base commit]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';

const BACKENDS = Array.from({ length: 16 }, (_, i) => `10.9.0.${i + 1}:25`);
const capOf = (b: string) => (b === BACKENDS[0] ? 2 : 100);
const HOLD_MS = 10;

interface Ledgerish {
  tryAcquire(id: string, cap: number): Promise<{ release(): void } | undefined>;
  onRelease(l: (id: string) => void): () => void;
  watch?(id: string): () => void;
  close(): Promise<void>;
}

/** One node: its share of the session rate for `seconds`; prints its counts as JSON at the end. */
async function child(): Promise<void> {
  const [, , , module, url, nodeId, rateArg, secondsArg, prefix] = process.argv;
  const { RedisLedger } = (await import(module!)) as {
    RedisLedger: { create(o: object): Promise<Ledgerish> };
  };
  const ledger = await RedisLedger.create({
    redis: url,
    nodeId,
    leaseTtlMs: 15_000,
    onRedisDown: 'reject',
    keyPrefix: prefix,
  });
  const rate = Number(rateArg);
  const seconds = Number(secondsArg);
  let events = 0;
  let own = 0;
  let sessions = 0;
  const queues = new Map<string, Array<() => void>>(BACKENDS.map((b) => [b, []]));
  ledger.onRelease((id) => {
    events += 1;
    queues.get(id)?.shift()?.();
  });
  const session = async (k: number) => {
    const b = BACKENDS[k % 8 === 0 ? 0 : 1 + (k % 15)]!;
    for (;;) {
      const lease = await ledger.tryAcquire(b, capOf(b));
      if (lease) {
        await new Promise((r) => setTimeout(r, HOLD_MS));
        own += 1;
        lease.release();
        sessions += 1;
        return;
      }
      const unwatch = ledger.watch?.(b);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 250);
        queues.get(b)!.push(() => {
          clearTimeout(t);
          r();
        });
      });
      unwatch?.();
    }
  };
  const running: Array<Promise<void>> = [];
  const t0 = Date.now();
  for (let k = 0; Date.now() - t0 < seconds * 1000; k++) {
    running.push(session(k));
    const due = t0 + ((k + 1) * 1000) / rate;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
  }
  await Promise.all(running);
  const elapsed = (Date.now() - t0) / 1000;
  // Local releases call the listeners too: what came from other nodes is the rest.
  process.stdout.write(`${JSON.stringify({ heard: (events - own) / elapsed, sessions })}\n`);
  await ledger.close();
}

/** The base commit's ledger, compiled once into test/dist/bench/base-ledger-<commit>/. */
function buildBase(commit: string): string {
  const root = resolve(import.meta.dirname, '../../..');
  const dir = join(root, 'test/dist/bench', `base-ledger-${commit}`);
  const entry = join(dir, 'dist/src/index.js');
  if (existsSync(entry)) return entry;
  mkdirSync(dir, { recursive: true });
  const tar = execFileSync('git', ['-C', root, 'archive', commit, 'packages/ledger/src'], {
    maxBuffer: 1 << 26,
  });
  execFileSync('tar', ['-x', '-C', dir, '--strip-components=2'], { input: tar });
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      extends: join(root, 'tsconfig.base.json'),
      compilerOptions: { rootDir: 'src', outDir: 'dist/src', composite: false, incremental: false },
      include: ['src'],
    }),
  );
  execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', dir], { stdio: 'inherit' });
  execFileSync('cp', ['-r', join(dir, 'src/lua'), join(dir, 'dist/src/lua')]);
  return entry;
}

async function runConfig(
  module: string,
  url: string,
  nodes: number,
  rate: number,
  seconds: number,
  admin: Redis,
  tag: string,
) {
  const stats = async () => {
    const info = `${await admin.info('commandstats')}${await admin.info('cpu')}`;
    const field = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)![1]);
    const sum = (re: RegExp) => [...info.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
    return {
      // commandstats also counts the commands a script runs inside Redis
      calls: sum(/cmdstat_\w+:calls=(\d+)/g),
      scripts: sum(/cmdstat_eval(?:sha)?:calls=(\d+)/g),
      cpu: field('used_cpu_sys') + field('used_cpu_user'),
    };
  };
  const before = await stats();
  const prefix = `fanout-${tag}-${nodes}-${Date.now()}`;
  const results = await Promise.all(
    Array.from(
      { length: nodes },
      (_, i) =>
        new Promise<{ heard: number; sessions: number }>((res, rej) => {
          const p = spawn(
            process.execPath,
            [
              import.meta.filename,
              '--child',
              module,
              url,
              `n${i}`,
              String(rate / nodes),
              String(seconds),
              prefix,
            ],
            { stdio: ['ignore', 'pipe', 'inherit'] },
          );
          let out = '';
          p.stdout.on('data', (d) => {
            out += d;
          });
          p.on('exit', (code) => (code === 0 ? res(JSON.parse(out)) : rej(new Error(`child exit ${code}`))));
        }),
    ),
  );
  const after = await stats();
  const sessions = results.reduce((n, r) => n + r.sessions, 0);
  const heard = results.map((r) => r.heard);
  const heardPerNode = heard.reduce((a, b) => a + b, 0) / heard.length;
  return {
    heardPerNode,
    // the achieved cluster rate varies on a loaded machine: messages per 1000 sessions of the cluster
    heardPer1000: (heardPerNode * seconds * 1000) / sessions,
    scriptsPerSession: (after.scripts - before.scripts) / sessions,
    commandsPerSession: (after.calls - before.calls) / sessions,
    cpuUsPerSession: ((after.cpu - before.cpu) * 1e6) / sessions,
    sessions,
  };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 8);
  const rate = Number(process.argv[3] ?? 400);
  const base = process.argv[4] ?? '35dc46d';
  const variants: Array<[string, string]> = [
    [`base ${base}`, pathToFileURL(buildBase(base)).href],
    ['this tree', '@smtp-lb/ledger'],
  ];
  const redis = await startRedis();
  const admin = new Redis(redis.url);
  try {
    console.log(
      `${rate} sessions/s in total for ${seconds} s; load average ${(await import('node:os'))
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    console.log(
      '| nodes | ledger | messages from other nodes per node per s | the same per 1000 cluster sessions | scripts (round trips) per session | Redis commands per session, inside scripts too | Redis CPU per session (µs) | sessions |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const nodes of [8, 16]) {
      for (const [name, module] of variants) {
        const r = await runConfig(module, redis.url, nodes, rate, seconds, admin, name.replace(/\W/g, ''));
        console.log(
          `| ${nodes} | ${name} | ${r.heardPerNode.toFixed(0)} | ${r.heardPer1000.toFixed(0)} | ${r.scriptsPerSession.toFixed(2)} | ${r.commandsPerSession.toFixed(1)} | ${r.cpuUsPerSession.toFixed(0)} | ${r.sessions} |`,
        );
      }
    }
  } finally {
    admin.disconnect();
    await redis.stop();
  }
}

if (process.argv[2] === '--child') await child();
else await main();
