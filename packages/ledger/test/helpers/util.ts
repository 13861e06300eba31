// Small shared test utilities: a private Redis per suite, unique key prefixes, polling with a
// deadline, waiting for a release event, and a FIFO of waiters like the proxy's (woken by releases,
// not by polling).
import { after, before } from 'node:test';
import { type RedisServer, startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { RedisLedger, type RedisLedgerOptions } from '../../src/redis-ledger.js';
import type { Ledger } from '../../src/types.js';

/**
 * A private Redis for the enclosing suite and an admin client on it, started before its tests and
 * stopped after them. `survivesRestarts`: the admin client reconnects quickly and keeps quiet while
 * the suite restarts Redis.
 */
export function suiteRedis(opts: { survivesRestarts?: boolean } = {}): {
  readonly redis: RedisServer;
  readonly admin: Redis;
} {
  const s = {} as { redis: RedisServer; admin: Redis };
  before(async () => {
    s.redis = await startRedis();
    s.admin = new Redis(s.redis.url, opts.survivesRestarts ? { retryStrategy: () => 50 } : {});
    if (opts.survivesRestarts) s.admin.on('error', () => undefined);
  });
  after(async () => {
    s.admin.disconnect();
    await s.redis.stop();
  });
  return s;
}

/** RedisLedger nodes `ids` on one key prefix, created together. */
export function ledgerNodes(
  prefix: string,
  ids: string[],
  opts: Omit<RedisLedgerOptions, 'keyPrefix' | 'nodeId'>,
): Promise<RedisLedger[]> {
  return Promise.all(ids.map((nodeId) => RedisLedger.create({ ...opts, nodeId, keyPrefix: prefix })));
}

let seq = 0;
export const uniquePrefix = (name: string) => `t-${name}-${process.pid}-${++seq}`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * Resolves with the elapsed ms when `ledger` reports a release of `backendId`; like a waiting session
 * it watches the backend meanwhile (the ledger then listens on its release channel).
 */
export function nextRelease(ledger: Ledger, backendId: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  const unwatch = ledger.watch?.(backendId);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      unwatch?.();
      reject(new Error(`no release of ${backendId} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = ledger.onRelease((id) => {
      if (id !== backendId) return;
      clearTimeout(timer);
      off();
      unwatch?.();
      resolve(Date.now() - t0);
    });
  });
}

/**
 * One FIFO of waiters per ledger and backend, like the proxy's; each release event wakes the oldest
 * waiter, and the backend is watched while anyone waits.
 */
export class Waiters {
  private readonly queue: Array<() => void> = [];
  constructor(
    private readonly ledger: Ledger,
    private readonly backendId: string,
  ) {
    ledger.onRelease((id) => {
      if (id === backendId) this.queue.shift()?.();
    });
  }
  /** Waits for a wake-up, or gives up after `ms` (the caller then simply retries). */
  wait(ms: number): Promise<void> {
    const unwatch = this.ledger.watch?.(this.backendId);
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.queue.indexOf(wake);
        if (i >= 0) this.queue.splice(i, 1);
        resolve();
      }, ms);
      this.queue.push(wake);
    }).finally(() => unwatch?.());
  }
}
