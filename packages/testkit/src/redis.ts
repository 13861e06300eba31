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
  /**
   * SIGSTOP: the process hangs with its connections open and its data kept (what a host that
   * froze or a network black hole looks like to clients); `resume()` (SIGCONT) ends it.
   */
  pause(): void;
  resume(): void;
}

export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** SIGSTOP / SIGCONT this master (see RedisServer.pause). */
  pause(): void;
  resume(): void;
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
  let paused = false;
  const signal = (sig: NodeJS.Signals) => {
    if (!server.exitStatus()) process.kill(server.pid, sig);
  };
  // A stopped process does not act on SIGTERM: let it run again before it is told to stop.
  const unpause = () => {
    if (paused) signal('SIGCONT');
    paused = false;
  };
  return {
    host: HOST,
    port,
    url: `redis://${HOST}:${port}`,
    async stop() {
      unpause();
      await server.stop();
      await dir.remove();
    },
    async restart() {
      unpause();
      await server.stop();
      server = await spawnRedis(port, dir.path, args);
    },
    async down() {
      unpause();
      await server.stop();
    },
    pause() {
      signal('SIGSTOP');
      paused = true;
    },
    resume: unpause,
  };
}

export interface RedisClusterOptions {
  /** Number of masters, at least 3 (redis-cli refuses fewer). Default 3. */
  masters?: number;
  /**
   * Redis' `cluster-require-full-coverage` (default true, as in Redis): when true, one master
   * failed stops the whole cluster answering; false keeps the other masters serving their slots.
   */
  requireFullCoverage?: boolean;
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
      if (options.requireFullCoverage === false) args.push('--cluster-require-full-coverage', 'no');
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
  const nodes = servers.map((s) => ({
    host: s.host,
    port: s.port,
    url: s.url,
    pause: () => s.pause(),
    resume: () => s.resume(),
  }));
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
