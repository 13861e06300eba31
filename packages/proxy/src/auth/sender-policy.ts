// The rules about an authenticated sender (top-level `senders`), cluster-wide: MAIL FROM must be an
// address the user owns (553 5.7.1), a suspended user is refused everywhere (554 5.7.1), and messages
// and recipients per user and window, and concurrent sessions per user, are counted with the
// client-limit machinery of the ledger (Redis when the node has one). Over a limit the command gets
// 450 4.7.1 (`onExceed: reject`) or the user is suspended on every node until an operator lifts it.
import type { SendersConfig } from '@smtp-lb/config';
import type { ClientLimits, ClientSlot, RateResult, Suspensions } from '@smtp-lb/ledger';
import type { Reply } from '@smtp-lb/upstream';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { replies } from '../replies.js';
import type { Client } from '../transaction.js';

export interface SenderPolicyDeps {
  config: () => SendersConfig;
  limits: ClientLimits;
  suspensions: Suspensions;
  metrics: Metrics;
  nodeId: string;
  log: Logger;
}

/**
 * Whether `user` may use `address` as its sender: the user's own address (a user name that is an
 * address), an address the verifier listed, or any address of the user's domain (a user name
 * `alice@example.com` may send as `sales@example.com`; RFC 5321 local parts compare as given,
 * domains case-insensitively). The null sender `<>` is allowed (bounces, read receipts).
 */
export function ownsAddress(user: string, listed: readonly string[] | undefined, address: string): boolean {
  if (address === '') return true;
  const a = address.toLowerCase();
  if (listed?.includes(a)) return true;
  const u = user.toLowerCase();
  if (u === a) return true;
  const at = u.lastIndexOf('@');
  const domain = at > 0 ? u.slice(at + 1) : undefined;
  return domain !== undefined && domain !== '' && a.slice(a.lastIndexOf('@') + 1) === domain;
}

export class SenderPolicy {
  readonly #d: SenderPolicyDeps;

  constructor(deps: SenderPolicyDeps) {
    this.#d = deps;
  }

  get suspensions(): Suspensions {
    return this.#d.suspensions;
  }

  /**
   * An operator lifts `user`'s suspension: its message and recipient counts start afresh, or its next
   * message would suspend it again. Throws when Redis is unreachable.
   */
  async lift(user: string): Promise<boolean> {
    const lifted = await this.#d.suspensions.lift(user);
    const key = user.toLowerCase();
    await Promise.all([
      this.#d.limits.reset('user-messages', key),
      this.#d.limits.reset('user-recipients', key),
    ]);
    return lifted;
  }

  /**
   * MAIL FROM of an authenticated session: suspension, own address, the message rate. The
   * suspension and the message count are asked in one Redis round trip when the address is the
   * user's: a suspended user's attempts count too, which changes nothing (lifting a suspension
   * starts the counts afresh).
   */
  async atMail(client: Client, from: string, log: Logger): Promise<Reply | undefined> {
    const user = client.user;
    if (user === undefined) return undefined;
    const config = this.#d.config();
    const owned = !config.ownAddresses || ownsAddress(user, client.userAddresses, from);
    const [suspended, hit] = await Promise.all([
      this.#d.suspensions.get(user),
      owned ? this.#hit(user, 'messages') : undefined,
    ]);
    if (suspended) {
      log.info({ user }, 'MAIL from a suspended user');
      return replies.senderSuspended();
    }
    if (!owned) {
      log.info({ user, from }, 'sender address not owned by the user');
      return replies.senderNotOwned(from);
    }
    return hit && this.#verdict(user, 'messages', hit, log);
  }

  /** Each RCPT TO of an authenticated session counts against the user's recipient rate. */
  async atRcpt(client: Client, log: Logger): Promise<Reply | undefined> {
    const user = client.user;
    if (user === undefined) return undefined;
    const hit = await this.#hit(user, 'recipients');
    return hit && this.#verdict(user, 'recipients', hit, log);
  }

  /** A concurrent session of `user`; undefined when over `senders.limits.sessions`. */
  async openSession(user: string, log: Logger): Promise<ClientSlot | undefined> {
    const max = this.#d.config().limits.sessions;
    if (max === 0) return { release() {} };
    const key = `user:${user.toLowerCase()}`;
    const r = await this.#d.limits.openSession(key, key, { perAddress: max, perPrefix: 0 });
    if (r.ok) return r.slot;
    log.info({ user, sessions: r.address, max }, 'user over its concurrent sessions');
    return undefined;
  }

  /** Counts one message or recipient of `user`; undefined when that limit is off. */
  async #hit(user: string, what: 'messages' | 'recipients'): Promise<RateResult | undefined> {
    const rate = this.#d.config().limits[what];
    if (rate.limit === 0) return undefined;
    return this.#d.limits.hit(`user-${what}`, user.toLowerCase(), rate.limit, rate.window);
  }

  /** What a count over the limit means: 450 (`onExceed: reject`) or a suspension. */
  async #verdict(
    user: string,
    what: 'messages' | 'recipients',
    hit: RateResult,
    log: Logger,
  ): Promise<Reply | undefined> {
    if (hit.ok) return undefined;
    const config = this.#d.config();
    const rate = config.limits[what];
    if (config.onExceed === 'reject') {
      log.info(
        { user, what, count: hit.count, limit: rate.limit, windowMs: rate.window },
        'user over its limit',
      );
      return replies.senderOverLimit();
    }
    const reason = `${what} over ${rate.limit} per ${Math.round(rate.window / 1000)}s`;
    const isNew = await this.#d.suspensions
      .suspend({ user, since: Date.now(), reason, node: this.#d.nodeId })
      .catch((err: unknown) => {
        // Redis unreachable: this node still refuses the user (it remembers what it suspended).
        log.warn({ user, err: { message: (err as Error).message } }, 'suspension not stored in Redis');
        return true;
      });
    if (isNew) {
      this.#d.metrics.sendersSuspended.inc();
      log.warn({ user, reason, count: hit.count }, 'user suspended');
    }
    return replies.senderSuspended();
  }
}
