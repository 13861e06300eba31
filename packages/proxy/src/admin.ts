// Admin HTTP (DESIGN.md "Admin HTTP"): /metrics for Prometheus, /healthz (the process is alive),
// /readyz (ready to take sessions), /status (JSON for `smtp-lb status` and humans), and the
// suspended senders: GET /senders/suspended, DELETE /senders/suspended/<user> (lifts it; refused
// unless `admin.token` is set), and likewise the locked-out hosts of outbound listeners: GET
// /hosts/locked, DELETE /hosts/locked/<address>. Bound to localhost by default; /status, /senders and
// /hosts need the bearer token when one is set.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AdminConfig } from '@smtp-lb/config';
import type { RecipientMapStatus } from '@smtp-lb/discovery';
import type { Suspension } from '@smtp-lb/ledger';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export interface NodeStatus {
  node: string;
  ready: boolean;
  draining: boolean;
  /**
   * mode: 'memory', 'redis', or 'degraded' while some backend's keys are out of reach; liveNodes:
   * the nodes this one counts (the divisor of its local share), with a shared ledger.
   */
  ledger: { mode: string; degradedBackends: string[]; liveNodes?: number };
  sessions: number;
  /** Each recipient map: state (ok, failing, idle), detail, entries (file), cached answers. */
  recipientMaps: RecipientMapStatus[];
  pools: Array<{
    name: string;
    ready: boolean;
    backends: Array<{
      id: string;
      weight: number;
      effectiveWeight: number;
      maxConnections: number;
      nodeConnections: number;
      clusterConnections: number;
      /** penalised: weight cut (connect errors, deferrals); ejected: no new sessions for now. */
      health: 'ok' | 'penalised' | 'ejected';
      /** The ledger for this backend: 'degraded' while its keys are out of reach (local share). */
      ledger: string;
      /** With `outlierDetection`: the window's counts and the ejection, if any. */
      outlier?: {
        transactions: number;
        deferred: number;
        /** Ejections not yet forgiven (the multiplier of the next one's duration). */
        ejections: number;
        reason?: 'failures' | 'deferrals';
        ejectedUntil?: string;
        ejectedForMs?: number;
      };
    }>;
  }>;
}

export interface AdminDeps {
  metrics: Metrics;
  status: () => NodeStatus;
  log: Logger;
  /** Suspended senders: the list, and lifting one (SenderPolicy). */
  senders?: SuspensionStore;
  /** Locked-out hosts of outbound listeners: the list, and lifting one (HostPolicy). */
  hosts?: SuspensionStore;
}

interface SuspensionStore {
  list(): Promise<Suspension[]>;
  lift(name: string): Promise<boolean>;
}

const SUSPENDED = '/senders/suspended';
const LOCKED = '/hosts/locked';

export class AdminServer {
  readonly #server: Server;
  readonly #config: AdminConfig;
  readonly #d: AdminDeps;

  constructor(config: AdminConfig, deps: AdminDeps) {
    this.#config = config;
    this.#d = deps;
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        deps.log.error({ err }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === SUSPENDED || path.startsWith(`${SUSPENDED}/`)) {
      await this.#senders(req, res, path);
      return;
    }
    if (path === LOCKED || path.startsWith(`${LOCKED}/`)) {
      await this.#hosts(req, res, path);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/metrics': {
        const body = await this.#d.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.#d.metrics.registry.contentType }).end(body);
        return;
      }
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const s = this.#d.status();
        const why = s.draining ? 'draining' : s.ready ? 'ready' : 'no backend set known yet';
        res.writeHead(s.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${why}\n`);
        return;
      }
      case '/status': {
        if (!this.#authorized(req, res)) return;
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(`${JSON.stringify(this.#d.status(), null, 2)}\n`);
        return;
      }
      default:
        res.writeHead(404).end();
    }
  }

  #authorized(req: IncomingMessage, res: ServerResponse): boolean {
    const token = this.#config.token;
    if (!token || req.headers.authorization === `Bearer ${token}`) return true;
    res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
    return false;
  }

  async #senders(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const suspensions = this.#d.senders;
    const json = (status: number, body: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body, null, 2)}\n`);
    if (!this.#authorized(req, res)) return;
    if (!suspensions) return void json(404, { error: 'no sender suspensions on this node' });
    try {
      if (path === SUSPENDED && (req.method === 'GET' || req.method === 'HEAD')) {
        const list = await suspensions.list();
        this.#d.metrics.sendersSuspended.set(list.length);
        return void json(200, { suspended: list });
      }
      if (path !== SUSPENDED && req.method === 'DELETE') {
        // Lifting is an operator's act: never on a node without a token.
        if (!this.#config.token) return void json(403, { error: 'set admin.token to lift suspensions' });
        let user: string;
        try {
          user = decodeURIComponent(path.slice(SUSPENDED.length + 1));
        } catch {
          return void json(400, { error: 'bad user name encoding' });
        }
        const lifted = await suspensions.lift(user);
        this.#d.log.info({ user, lifted }, 'suspension lifted by the admin API');
        return void json(lifted ? 200 : 404, { user, lifted });
      }
    } catch (err) {
      this.#d.log.warn({ err: { message: (err as Error).message } }, 'senders admin request failed');
      return void json(503, { error: 'suspensions unavailable (Redis unreachable?)' });
    }
    res.writeHead(405, { allow: path === SUSPENDED ? 'GET, HEAD' : 'DELETE' }).end();
  }

  /** The same as #senders for the lock-outs: list, and lift one (token required). */
  async #hosts(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const hosts = this.#d.hosts;
    const json = (status: number, body: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body, null, 2)}\n`);
    if (!this.#authorized(req, res)) return;
    if (!hosts) return void json(404, { error: 'no host lock-outs on this node' });
    try {
      if (path === LOCKED && (req.method === 'GET' || req.method === 'HEAD')) {
        return void json(200, {
          locked: (await hosts.list()).map(({ user, ...rest }) => ({ host: user, ...rest })),
        });
      }
      if (path !== LOCKED && req.method === 'DELETE') {
        if (!this.#config.token) return void json(403, { error: 'set admin.token to lift lock-outs' });
        let host: string;
        try {
          host = decodeURIComponent(path.slice(LOCKED.length + 1));
        } catch {
          return void json(400, { error: 'bad host encoding' });
        }
        const lifted = await hosts.lift(host);
        this.#d.log.info({ host, lifted }, 'lock-out lifted by the admin API');
        return void json(lifted ? 200 : 404, { host, lifted });
      }
    } catch (err) {
      this.#d.log.warn({ err: { message: (err as Error).message } }, 'hosts admin request failed');
      return void json(503, { error: 'lock-outs unavailable (Redis unreachable?)' });
    }
    res.writeHead(405, { allow: path === LOCKED ? 'GET, HEAD' : 'DELETE' }).end();
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#config.listen.port, this.#config.listen.host, () => {
        this.#server.off('error', reject);
        const a = this.#server.address();
        if (a && typeof a === 'object') resolve({ host: a.address, port: a.port });
        else reject(new Error('admin server has no address'));
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
