// Private Redis servers for tests: Debian's redis-server on a free loopback port with its own
// directory and no persistence, and a Redis Cluster of several masters built with redis-cli.
// restart() brings a server back on the same port, for "Redis down, then back" tests.
import { TestkitError, tail } from './errors.js';
import { freePort } from './free-port.js';
import { type ManagedProcess, makeTempDir, pollUntil, runCommand, startProcess } from './process.js';

const HOST = '127.0.0.1';

export interface RedisOptions {
  /** Default: a free port. */
  port?: number;
  /** More redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  /** Stops the server (no data is kept) and removes its directory. */
  stop(): Promise<void>;
  /** Stops the server and starts a new one on the same port (empty: nothing is persisted). */
  restart(): Promise<void>;
  /** Stops the server but keeps its port and directory, for an outage that `restart()` ends. */
  down(): Promise<void>;
}

export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
  readonly url: string;
}

export interface RedisCluster {
  readonly nodes: readonly RedisClusterNode[];
  /** One URL per master, e.g. for `new Cluster(urls)`. */
  readonly urls: readonly string[];
  stop(): Promise<void>;
}

async function spawnRedis(port: number, dir: string, args: readonly string[]): Promise<ManagedProcess> {
  const server = startProcess('redis-server', 'redis-server', [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--dir',
    dir,
    ...args,
  ]);
  try {
    await server.waitForOutput(/Ready to accept connections/, 15_000);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort(HOST));
  const dir = await makeTempDir('redis');
  const args = options.args ?? [];
  let server: ManagedProcess;
  try {
    server = await spawnRedis(port, dir.path, args);
  } catch (err) {
    await dir.remove();
    throw err;
  }
  return {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    async stop() {
      await server.stop();
      await dir.remove();
    },
    async restart() {
      await server.stop();
      server = await spawnRedis(port, dir.path, args);
    },
    async down() {
      await server.stop();
    },
  };
}

export interface RedisClusterOptions {
  /** Number of masters, at least 3 (redis-cli refuses fewer). Default 3. */
  masters?: number;
}

/** Starts `masters` cluster-enabled servers and joins them into one cluster holding all 16384 slots. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  if (!Number.isInteger(masters) || masters < 3) {
    throw new TestkitError('TESTKIT_OPTION', `a Redis Cluster needs at least 3 masters, got ${masters}`);
  }
  const servers: RedisServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    const taken = new Set<number>();
    for (let i = 0; i < masters; i++) {
      // The cluster bus needs a port of its own; by default it is port + 10000, which may be taken.
      const [port, busPort] = [await distinctFreePort(taken), await distinctFreePort(taken)];
      const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'];
      args.push('--cluster-port', String(busPort), '--cluster-node-timeout', '3000');
      servers.push(await startRedis({ port, args }));
    }
    const created = await runCommand(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...servers.map((s) => `${s.host}:${s.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { timeoutMs: 30_000 },
    );
    if (created.code !== 0) {
      throw new TestkitError(
        'TESTKIT_COMMAND',
        `redis-cli --cluster create failed:\n${tail(created.stdout + created.stderr)}`,
      );
    }
    // `create` returns once the slots are assigned; every node must also see the others and the
    // slots as covered before a cluster client gets a consistent map.
    for (const s of servers) {
      await pollUntil(
        `cluster state ok on ${s.port}`,
        async () => {
          const info = await runCommand(
            'redis-cli',
            ['-h', s.host, '-p', String(s.port), 'cluster', 'info'],
            {
              timeoutMs: 5000,
            },
          );
          const ok =
            /cluster_state:ok/.test(info.stdout) &&
            info.stdout.includes(`cluster_known_nodes:${masters}`) &&
            info.stdout.includes('cluster_slots_ok:16384');
          return ok ? true : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const nodes = servers.map(({ host, port, url }) => ({ host, port, url }));
  return { nodes, urls: nodes.map((n) => n.url), stop };
}

async function distinctFreePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await freePort(HOST);
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}
