// A private Redis Sentinel set-up, the usual HA shape on Kubernetes (Bitnami-style): one master,
// replicas following it and a quorum of Debian's redis-sentinel processes watching it, all on free
// loopback ports. failover() stops the current master and waits until the sentinels have promoted
// a replica, so a test sees a real failover, not a simulated one.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TestkitError, tail } from './errors.js';
import { freePort } from './free-port.js';
import {
  type ManagedProcess,
  makeTempDir,
  pollUntil,
  runCommand,
  startProcess,
  type TempDir,
} from './process.js';
import { type RedisServer, startRedis } from './redis.js';

const HOST = '127.0.0.1';

export interface RedisSentinelOptions {
  /** Replicas of the master; default 1. */
  replicas?: number;
  /** Sentinel processes; default 3 (quorum 2). */
  sentinels?: number;
  /** requirepass / masterauth of the data nodes (the sentinels get it as auth-pass). */
  password?: string;
  /** The monitored master's name; default 'smtplb'. */
  masterName?: string;
  /** Sentinel's down-after-milliseconds; default 1000. */
  downAfterMs?: number;
}

export interface HostAndPort {
  readonly host: string;
  readonly port: number;
}

export interface RedisSentinelSetup {
  readonly masterName: string;
  /** The sentinels, `{ host, port }`. */
  readonly sentinels: readonly HostAndPort[];
  /** The data nodes: the first master first, then the replicas. */
  readonly servers: readonly RedisServer[];
  /** The master the sentinels name now. */
  master(): Promise<HostAndPort>;
  /**
   * Stops the current master's process (it stays down) and resolves with the replica the
   * sentinels promoted, once that replica says it is a master.
   */
  failover(timeoutMs?: number): Promise<HostAndPort>;
  stop(): Promise<void>;
}

async function cli(port: number, args: string[], password?: string): Promise<string> {
  const auth = password ? ['--no-auth-warning', '-a', password] : [];
  const r = await runCommand('redis-cli', ['-h', HOST, '-p', String(port), ...auth, ...args], {
    timeoutMs: 5000,
  });
  if (r.code !== 0)
    throw new TestkitError('TESTKIT_COMMAND', `redis-cli ${args.join(' ')}: ${tail(r.stderr)}`);
  return r.stdout;
}

export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelSetup> {
  const replicas = options.replicas ?? 1;
  const count = options.sentinels ?? 3;
  const name = options.masterName ?? 'smtplb';
  const password = options.password;
  const downAfter = options.downAfterMs ?? 1000;
  if (replicas < 1 || count < 1) {
    throw new TestkitError('TESTKIT_OPTION', 'a Sentinel set-up needs at least one replica and one sentinel');
  }
  const quorum = Math.floor(count / 2) + 1;
  const auth = password ? ['--requirepass', password, '--masterauth', password] : [];
  const servers: RedisServer[] = [];
  const sentinels: Array<{ process: ManagedProcess; dir: TempDir; port: number }> = [];
  const stop = async () => {
    await Promise.all(
      sentinels.map(async (s) => {
        await s.process.stop();
        await s.dir.remove();
      }),
    );
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    const master = await startRedis({ args: auth });
    servers.push(master);
    for (let i = 0; i < replicas; i++) {
      servers.push(await startRedis({ args: [...auth, '--replicaof', HOST, String(master.port)] }));
    }
    for (const r of servers.slice(1)) {
      await pollUntil(
        `replica ${r.port} in sync`,
        async () =>
          (await cli(r.port, ['info', 'replication'], password)).includes('master_link_status:up')
            ? true
            : undefined,
        { timeoutMs: 15_000, intervalMs: 100 },
      );
    }
    for (let i = 0; i < count; i++) {
      const dir = await makeTempDir('sentinel');
      const port = await freePort(HOST);
      const conf = join(dir.path, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `port ${port}`,
          `bind ${HOST}`,
          `dir ${dir.path}`,
          `sentinel monitor ${name} ${HOST} ${master.port} ${quorum}`,
          `sentinel down-after-milliseconds ${name} ${downAfter}`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          ...(password ? [`sentinel auth-pass ${name} ${password}`] : []),
          '',
        ].join('\n'),
      );
      const process = startProcess('redis-sentinel', 'redis-server', [conf, '--sentinel']);
      sentinels.push({ process, dir, port });
      await process.waitForOutput(new RegExp(`\\+monitor master ${name}`), 10_000);
    }
    // A failover needs every sentinel to know the replicas and the other sentinels (hello messages
    // every 2 s on the master): wait for that rather than fail the first failover by chance.
    for (const s of sentinels) {
      await pollUntil(
        `sentinel ${s.port} sees ${replicas} replicas and ${count - 1} other sentinels`,
        async () => {
          const master = await cli(s.port, ['sentinel', 'master', name]);
          const lines = master.split('\n').map((l) => l.trim());
          const field = (k: string) => lines[lines.indexOf(k) + 1];
          return Number(field('num-slaves')) === replicas &&
            Number(field('num-other-sentinels')) === count - 1
            ? true
            : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 200 },
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const current = async (): Promise<HostAndPort> => {
    const out = (await cli(sentinels[0]!.port, ['sentinel', 'get-master-addr-by-name', name]))
      .trim()
      .split('\n');
    return { host: out[0]!.trim(), port: Number(out[1]) };
  };
  return {
    masterName: name,
    sentinels: sentinels.map((s) => ({ host: HOST, port: s.port })),
    servers,
    master: current,
    async failover(timeoutMs = 30_000) {
      const old = await current();
      const server = servers.find((s) => s.port === old.port);
      if (!server) throw new TestkitError('TESTKIT_OPTION', `the master ${old.port} is not one of ours`);
      await server.down();
      return pollUntil(
        `a replica promoted after ${old.port} went down`,
        async () => {
          const now = await current();
          if (now.port === old.port) return undefined;
          const role = await cli(now.port, ['role'], password).catch(() => '');
          return role.startsWith('master') ? now : undefined;
        },
        { timeoutMs, intervalMs: 100 },
      );
    },
    stop,
  };
}
