// Runs a real Consul agent (`consul agent -dev`, built by scripts/build-consul.sh) on free loopback ports
// with its own data dir, and offers the few HTTP API calls tests need to move service instances between
// passing, critical, maintenance and gone.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export interface ConsulServiceInstance {
  id: string;
  name: string;
  address: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  weights?: { passing: number; warning: number };
  /** Status of the instance's TTL check right after registration (default passing). */
  status?: 'passing' | 'warning' | 'critical';
  /** TTL of the check (default 5m: tests flip it by hand, it must not expire on its own). */
  ttl?: string;
}

export interface ConsulAgentOptions {
  /** Also serve the HTTP API over TLS with this key and certificate (PEM), at `httpsAddress`. */
  tls?: { key: string; cert: string };
  /** Turn ACLs on, deny by default, with this token as the management token (the helpers use it). */
  managementToken?: string;
}

export interface ConsulAgent {
  /** `http://127.0.0.1:PORT` */
  readonly address: string;
  readonly httpPort: number;
  /** `https://127.0.0.1:PORT` when started with `tls`. */
  readonly httpsAddress?: string;
  /** Stops the agent and removes its data dir. */
  stop(): Promise<void>;
  /** Stops the agent and starts it again on the same ports and data dir; resolves once it has a leader. */
  restart(): Promise<void>;
  /** Stops the agent without removing anything, so a test can watch what clients do meanwhile. */
  kill(): Promise<void>;
  /** Starts the agent again after kill(). */
  start(): Promise<void>;
  /** Registers (or re-registers, replacing) a service instance with one TTL check `service:<id>`. */
  register(instance: ConsulServiceInstance): Promise<void>;
  /** Marks the TTL check passing; a new `note` changes only the check's output, not its status. */
  passCheck(serviceId: string, note?: string): Promise<void>;
  failCheck(serviceId: string): Promise<void>;
  maintenance(serviceId: string, enable: boolean): Promise<void>;
  deregister(serviceId: string): Promise<void>;
}

const CONSUL_START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

const live = new Set<ChildProcess>();
// A crashed or interrupted test run must not leave agents behind holding ports.
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

let binaryPath: string | undefined;

/** The agent binary: $SMTP_LB_CONSUL_BIN, else the cache that scripts/build-consul.sh fills (built if absent). */
export function consulBinary(): string {
  if (process.env.SMTP_LB_CONSUL_BIN) return process.env.SMTP_LB_CONSUL_BIN;
  if (binaryPath === undefined) {
    const script = resolve(import.meta.dirname, '../../../../scripts/build-consul.sh');
    binaryPath = execFileSync('bash', [script], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  }
  return binaryPath;
}

/** A loopback port free for both TCP and UDP (DNS and Serf listen on both). */
async function freePort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((done, fail) => {
      const srv = createServer();
      srv.once('error', fail);
      srv.listen(0, '127.0.0.1', () => {
        const address = srv.address();
        srv.close(() => done(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (taken.has(port)) continue;
    const udpFree = await new Promise<boolean>((done) => {
      const sock = createSocket('udp4');
      sock.once('error', () => done(false));
      sock.bind(port, '127.0.0.1', () => sock.close(() => done(true)));
    });
    if (udpFree) {
      taken.add(port);
      return port;
    }
  }
  throw Object.assign(new Error('no free TCP+UDP port pair found'), { code: 'TESTKIT_NO_PORT' });
}

export async function startConsul(opts: ConsulAgentOptions = {}): Promise<ConsulAgent> {
  const bin = consulBinary();
  const taken = new Set<number>();
  const ports = {
    http: await freePort(taken),
    serf_lan: await freePort(taken),
    serf_wan: await freePort(taken),
    server: await freePort(taken),
    // Unused by the tests, and each port an agent holds is one that another test's outgoing
    // connection may take while the agent is down for restart(): off. Dev mode would otherwise open
    // them on fixed default ports, which collide between parallel agents.
    dns: -1,
    grpc: -1,
    grpc_tls: -1,
    https: opts.tls ? await freePort(taken) : -1,
  };
  const dataDir = mkdtempSync(join(tmpdir(), 'smtp-lb-consul-'));
  const configFile = join(dataDir, 'agent.json');
  const extra: Record<string, unknown> = {};
  if (opts.tls) {
    writeFileSync(join(dataDir, 'tls.key'), opts.tls.key);
    writeFileSync(join(dataDir, 'tls.crt'), opts.tls.cert);
    extra.tls = { defaults: { key_file: join(dataDir, 'tls.key'), cert_file: join(dataDir, 'tls.crt') } };
  }
  if (opts.managementToken) {
    extra.acl = {
      enabled: true,
      default_policy: 'deny',
      enable_token_persistence: false,
      tokens: { initial_management: opts.managementToken, agent: opts.managementToken },
    };
  }
  writeFileSync(
    configFile,
    JSON.stringify({
      node_name: `smtp-lb-test-${ports.http}`,
      bind_addr: '127.0.0.1',
      client_addr: '127.0.0.1',
      advertise_addr: '127.0.0.1',
      ports,
      log_level: 'warn',
      // No network but loopback here: the update check would only time out.
      disable_update_check: true,
      // Sync check output changes to the catalog at once (default 5m), as status changes already are.
      check_update_interval: '0s',
      ui_config: { enabled: false },
      ...extra,
    }),
  );
  const address = `http://127.0.0.1:${ports.http}`;
  const headers: Record<string, string> = opts.managementToken
    ? { 'x-consul-token': opts.managementToken }
    : {};
  let child: ChildProcess | undefined;
  let log = '';

  const api = async (method: string, path: string, body?: unknown): Promise<void> => {
    const res = await fetch(`${address}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers,
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) {
      throw Object.assign(new Error(`consul ${method} ${path}: ${res.status} ${await res.text()}`), {
        code: 'TESTKIT_CONSUL_API',
      });
    }
  };

  const waitForLeader = async (proc: ChildProcess): Promise<void> => {
    const deadline = Date.now() + CONSUL_START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw Object.assign(new Error(`consul exited during start-up:\n${log}`), {
          code: 'TESTKIT_CONSUL_EXIT',
        });
      }
      try {
        const res = await fetch(`${address}/v1/status/leader`, { signal: AbortSignal.timeout(1_000) });
        const leader = res.ok ? ((await res.json()) as string) : '';
        // The node must also be in the catalog, or the first registration races its own node sync.
        if (leader !== '') {
          const node = await fetch(`${address}/v1/catalog/node/smtp-lb-test-${ports.http}`, {
            headers,
            signal: AbortSignal.timeout(1_000),
          });
          if (node.ok && (await node.json()) !== null) return;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw Object.assign(new Error(`consul had no leader within ${CONSUL_START_TIMEOUT_MS} ms:\n${log}`), {
      code: 'TESTKIT_CONSUL_TIMEOUT',
    });
  };

  const start = async (): Promise<void> => {
    log = '';
    const proc = spawn(bin, ['agent', '-dev', `-config-file=${configFile}`, `-data-dir=${dataDir}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    const keep = (chunk: Buffer): void => {
      log = (log + chunk.toString()).slice(-8_000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    await waitForLeader(proc);
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  await start();

  return {
    address,
    httpPort: ports.http,
    ...(opts.tls ? { httpsAddress: `https://127.0.0.1:${ports.https}` } : {}),
    kill,
    start,
    async stop() {
      await kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await start();
    },
    async register(s) {
      await api('PUT', '/v1/agent/service/register', {
        ID: s.id,
        Name: s.name,
        Address: s.address,
        Port: s.port,
        Tags: s.tags ?? [],
        Meta: s.meta ?? {},
        Weights: s.weights ? { Passing: s.weights.passing, Warning: s.weights.warning } : undefined,
        Check: { CheckID: `service:${s.id}`, TTL: s.ttl ?? '5m', Status: s.status ?? 'passing' },
      });
    },
    passCheck: (id, note) =>
      api(
        'PUT',
        `/v1/agent/check/pass/${encodeURIComponent(`service:${id}`)}${note === undefined ? '' : `?note=${encodeURIComponent(note)}`}`,
      ),
    failCheck: (id) => api('PUT', `/v1/agent/check/fail/${encodeURIComponent(`service:${id}`)}`),
    maintenance: (id, enable) =>
      api(
        'PUT',
        `/v1/agent/service/maintenance/${encodeURIComponent(id)}?enable=${enable}&reason=${encodeURIComponent('smtp-lb test')}`,
      ),
    deregister: (id) => api('PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`),
  };
}
