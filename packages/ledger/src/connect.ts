// Turns the configured Redis target (URL, Sentinel or Cluster) into an ioredis client tuned for
// the ledger: no offline queue and no command replay, so a call made while Redis is away fails
// at once (the ledger then degrades) instead of hanging or running twice after a reconnect.
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { LedgerError, scriptError } from './errors.js';

export type RedisTarget =
  /** redis://[user:password@]host:port/db, or rediss:// for TLS. */
  | string
  | { url: string; tls?: ConnectionOptions }
  | {
      /** host:port or redis:// URLs of the sentinels. */
      sentinels: Array<string | { host: string; port: number }>;
      /** Name of the monitored master. */
      name: string;
      username?: string;
      password?: string;
      sentinelUsername?: string;
      sentinelPassword?: string;
      db?: number;
      /** TLS to the master and to the sentinels alike (Bitnami-style set-ups run both on TLS). */
      tls?: ConnectionOptions;
    }
  | {
      /** redis:// or rediss:// URLs of some cluster nodes; credentials and TLS from the first. */
      cluster: string[];
      tls?: ConnectionOptions;
    };

export type LedgerClient = Redis | Cluster;

export interface ClientRole {
  /** The subscriber queues its SUBSCRIBE until connected and re-subscribes after a reconnect. */
  subscriber: boolean;
  connectionName: string;
  connectTimeoutMs: number;
  /**
   * Only idempotent reads go through this client (a recipient map's GETs): on a Redis Cluster
   * ioredis may resend a command refused with CLUSTERDOWN or TRYAGAIN or lost with a closed
   * connection (a master whose connection is still being made at start, a failover), which the
   * ledger's own clients must not do. Default false.
   */
  idempotentReads?: boolean;
}

const retry = (times: number) => Math.min(100 * times, 1000);

function parseNode(s: string) {
  const u = new URL(s.includes('://') ? s : `redis://${s}`);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:',
  };
}

function base(role: ClientRole): RedisOptions {
  return {
    connectionName: role.connectionName,
    connectTimeout: role.connectTimeoutMs,
    // The ready check's INFO can race a SUBSCRIBE and be refused in subscriber mode, and the
    // subscription is then lost (ioredis issue #2037); the subscriber needs no ready check.
    enableReadyCheck: !role.subscriber,
    enableOfflineQueue: role.subscriber,
    maxRetriesPerRequest: role.subscriber ? null : 0,
    autoResendUnfulfilledCommands: role.subscriber,
    retryStrategy: retry,
  };
}

export function createClient(target: RedisTarget, role: ClientRole): LedgerClient {
  const options = base(role);
  if (typeof target === 'string') return new Redis(target, options);
  if ('url' in target)
    return new Redis(target.url, { ...options, ...(target.tls ? { tls: target.tls } : {}) });
  if ('sentinels' in target) {
    return new Redis({
      ...options,
      sentinels: target.sentinels.map((s) => (typeof s === 'string' ? parseNode(s) : s)),
      name: target.name,
      username: target.username,
      password: target.password,
      sentinelUsername: target.sentinelUsername,
      sentinelPassword: target.sentinelPassword,
      db: target.db,
      sentinelRetryStrategy: retry,
      // A master demoted by a failover answers writes with READONLY: reconnect, and so ask the
      // sentinels again, rather than keep talking to a replica. (ioredis' failoverDetector was
      // tried and left a client closed for good when +switch-master raced a reconnect.)
      reconnectOnError: (err: Error) => err.message.startsWith('READONLY'),
      ...(target.tls ? { tls: target.tls, enableTLSForSentinelMode: true, sentinelTLS: target.tls } : {}),
    });
  }
  const nodes = target.cluster.map(parseNode);
  const first = nodes[0];
  if (!first) throw new RangeError('ledger: a Redis Cluster target needs at least one node URL');
  return new Cluster(
    nodes.map(({ host, port }) => ({ host, port })),
    {
      enableOfflineQueue: options.enableOfflineQueue,
      clusterRetryStrategy: retry,
      // No replay here either: ioredis resends a command refused with CLUSTERDOWN or TRYAGAIN, or
      // lost with a closed connection, after a delay, which can be after the caller's timeout gave
      // up on it and after newer commands ran (a re-assert overtaken by an older one, an acquire
      // counted after the re-assert that was to correct it). Refused, the call fails at once and
      // the ledger degrades that backend until a heartbeat re-asserts. (MOVED and ASK are followed
      // at once: the node that answered them did not run the command.)
      ...(role.subscriber || role.idempotentReads
        ? {}
        : { retryDelayOnClusterDown: 0, retryDelayOnFailover: 0, retryDelayOnTryAgain: 0 }),
      // The ledger's release channels are sharded (SSUBSCRIBE on the shard of each backend's slot).
      shardedSubscribers: role.subscriber,
      redisOptions: {
        connectionName: options.connectionName,
        connectTimeout: options.connectTimeout,
        enableReadyCheck: options.enableReadyCheck,
        maxRetriesPerRequest: options.maxRetriesPerRequest,
        autoResendUnfulfilledCommands: options.autoResendUnfulfilledCommands,
        username: first.username,
        password: first.password,
        ...(target.tls || first.tls ? { tls: target.tls ?? {} } : {}),
      },
    },
  );
}

const ignore = () => undefined;

/**
 * disconnect(), and keep the sockets it ends from crashing the process: ended in the middle of a
 * TLS handshake, a socket whose certificate check then fails emits a second error (the server's
 * "decode error" alert for the half-closed handshake) after ioredis' one-shot error listeners are
 * spent, and an 'error' without a listener is an uncaught exception. (Cluster: the pool's nodes.)
 */
export function disconnectClient(client: LedgerClient): void {
  const conns = client instanceof Cluster ? client.nodes('all') : [client];
  for (const c of conns) c.stream?.on('error', ignore);
  client.disconnect();
}

/** QUIT within `ms`, then disconnect() whatever happened, so that nothing reconnects afterwards. */
export async function closeClient(client: LedgerClient, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([client.quit(), late]).catch(() => undefined);
  clearTimeout(timer);
  disconnectClient(client);
}

/**
 * `p`, or LEDGER_TIMEOUT after `ms`: a Redis that stops answering must not hold a session. When the
 * timer fires, the reply may already be waiting in the socket: an event loop that was held up (a
 * loaded machine, a long GC) runs expired timers before it reads sockets. So the timeout gives the
 * loop one pass over its I/O (setImmediate runs after the poll phase) before it counts.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, command: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      immediate = setImmediate(() =>
        reject(new LedgerError('LEDGER_TIMEOUT', `${command}: no reply from Redis within ${ms} ms`, command)),
      );
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => {
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
  });
}

/** Any failure of a Redis call as a LedgerError: ours as they are, anything else LEDGER_UNAVAILABLE. */
export function asLedgerError(command: string, err: unknown): LedgerError {
  return err instanceof LedgerError
    ? err
    : new LedgerError('LEDGER_UNAVAILABLE', `${command}: ${(err as Error).message}`, command, { cause: err });
}

export function unknownReply(command: string, reply: unknown): LedgerError {
  return new LedgerError(
    'LEDGER_UNKNOWN_REPLY',
    `${command}: unexpected reply ${JSON.stringify(reply)}`,
    command,
  );
}

/**
 * Runs the script defined as `command` within `ms`. Scripts answer an array led by their code: a
 * negative code becomes its typed error, anything not of that shape LEDGER_UNKNOWN_REPLY.
 */
export async function runScript(
  client: LedgerClient,
  command: string,
  args: Array<string | number>,
  ms: number,
  name: string,
): Promise<unknown[]> {
  const fn = (client as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>)[
    command
  ]!;
  const reply = await withTimeout(fn.apply(client, args), ms, name);
  if (!Array.isArray(reply) || typeof reply[0] !== 'number') throw unknownReply(name, reply);
  if (reply[0] < 0) throw scriptError(name, reply[0]);
  return reply;
}
