// The paths under test, each a real program on a free loopback port in front of one smtp-sink:
// HAProxy in TCP mode (leastconn, one thread), nginx's mail proxy (smtp_auth none, with an
// auth_http responder of ours), and smtp-lb nodes started by their own CLI from a YAML file.
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type ManagedProcess, startProcess, waitForPort } from '@smtp-lb/testkit';

export interface Target {
  readonly name: string;
  readonly port: number;
  /** The process to watch (RSS), when the target is one process. */
  readonly process?: ManagedProcess;
  /** Process groups whose CPU time is the path's (every process of the proxy). */
  readonly groups: number[];
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const CLI = fileURLToPath(new URL('../../../packages/proxy/bin/smtp-lb.js', import.meta.url));

async function started(name: string, proc: ManagedProcess, port: number): Promise<Target> {
  try {
    await waitForPort(port, { process: proc, timeoutMs: 15_000 });
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    name,
    port,
    process: proc,
    groups: [proc.pid],
    async stop() {
      await proc.stop();
    },
  };
}

export interface HaproxyOptions {
  /** `maxconn` on every server line: connections beyond it wait in the backend's queue. */
  maxconn?: number;
  /** `timeout queue` (HAProxy's default is `timeout connect`, 5 s here). */
  queueTimeout?: string;
}

export function haproxyConfig(port: number, servers: readonly number[], o: HaproxyOptions = {}): string {
  const maxconn = o.maxconn === undefined ? '' : ` maxconn ${o.maxconn}`;
  return `global
  nbthread 1
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
${o.queueTimeout ? `  timeout queue ${o.queueTimeout}\n` : ''}frontend smtp
  bind ${HOST}:${port}
  default_backend mtas
backend mtas
  balance leastconn
${servers.map((p, i) => `  server s${i + 1} ${HOST}:${p}${maxconn}`).join('\n')}
`;
}

export async function startHaproxy(
  name: string,
  dir: string,
  servers: readonly number[],
  o: HaproxyOptions = {},
): Promise<Target> {
  const port = await freePort(HOST);
  const file = path.join(dir, `${name}.cfg`);
  await writeFile(file, haproxyConfig(port, servers, o));
  // -db: foreground, no daemon; stopped by SIGTERM like every testkit process.
  return started(name, startProcess(name, 'haproxy', ['-db', '-f', file]), port);
}

export function nginxConfig(dir: string, port: number, authPort: number, module: string): string {
  return `load_module ${module};
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 30000; }
mail {
  server_name mx.bench.test;
  auth_http ${HOST}:${authPort}/auth;
  proxy_pass_error_message on;
  xclient on;
  server {
    listen ${HOST}:${port};
    protocol smtp;
    smtp_auth none;
  }
}
`;
}

/** A minimal auth_http responder: every session goes to the sink. */
function startAuthResponder(sinkPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Server': HOST, 'Auth-Port': String(sinkPort) });
    res.end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const addr = server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : 0,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

export async function startNginx(dir: string, sinkPort: number, module: string): Promise<Target> {
  const auth = await startAuthResponder(sinkPort);
  try {
    const port = await freePort(HOST);
    const file = path.join(dir, 'nginx.conf');
    await writeFile(file, nginxConfig(dir, port, auth.port, module));
    const t = await started(
      'nginx',
      startProcess('nginx', 'nginx', ['-e', 'stderr', '-p', dir, '-c', file]),
      port,
    );
    return {
      ...t,
      async stop() {
        await t.stop();
        await auth.close();
      },
    };
  } catch (err) {
    await auth.close();
    throw err;
  }
}

const PIPE = fileURLToPath(new URL('./node-pipe.js', import.meta.url));

/** A plain Node.js TCP relay in front of the sink (node-pipe.ts): the floor for any Node.js proxy. */
export async function startNodePipe(name: string, sinkPort: number): Promise<Target> {
  const port = await freePort(HOST);
  return started(name, startProcess(name, process.execPath, [PIPE, String(port), String(sinkPort)]), port);
}

export interface NodeSpec {
  name: string;
  sinkPort: number;
  /** Redis URL: the node counts in Redis; absent: in memory. */
  redis?: string;
  keyPrefix?: string;
  maxSessions?: number;
  /** Admin HTTP port (for /metrics); default a port of the kernel's choosing. */
  adminPort?: number;
  /** Node.js options before the CLI script (--cpu-prof, --import). */
  nodeArgs?: string[];
  /** rspamd URL: every message is scanned by it before our final dot (scanner `spam`). */
  rspamd?: string;
  /** `balancing.defaultMaxConnections`, the sink's cap; default 1000. */
  maxConnections?: number;
  /** `admission.queueTimeout` (a duration); default the node's (30s). */
  queueTimeout?: string;
}

export function nodeConfig(spec: NodeSpec, port: number): string {
  const ledger = spec.redis
    ? `ledger: { redis: "${spec.redis}/0", keyPrefix: ${spec.keyPrefix ?? 'bench'} }\n`
    : '';
  return `node: { id: ${spec.name} }
listeners:
  - name: inbound
    listen: ${HOST}:${port}
    hostname: mx.bench.test
    pool: default
    maxSessions: ${spec.maxSessions ?? 10000}
${spec.rspamd ? '    scan: spam\n' : ''}pools:
  default:
    static:
      - { address: ${HOST}:${spec.sinkPort} }
    tls: none
balancing:
  defaultMaxConnections: ${spec.maxConnections ?? 1000}
${spec.queueTimeout ? `admission: { queueTimeout: ${spec.queueTimeout} }\n` : ''}${ledger}${spec.rspamd ? `scanners:\n  spam: { rspamd: { url: "${spec.rspamd}" }, onError: defer }\n` : ''}admin: { listen: ${HOST}:${spec.adminPort ?? 0} }
log: { level: warn }
`;
}

export async function startNode(dir: string, spec: NodeSpec): Promise<Target> {
  const port = await freePort(HOST);
  const file = path.join(dir, `${spec.name}.yaml`);
  await writeFile(file, nodeConfig(spec, port));
  const proc = startProcess(spec.name, process.execPath, [...(spec.nodeArgs ?? []), CLI, '--config', file]);
  return started(spec.name, proc, port);
}
