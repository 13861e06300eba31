// The rules about client hosts of outbound listeners (top-level `hosts`), cluster-wide: messages,
// recipients and distinct recipient domains per host and window are counted with the ledger's
// client-limit machinery; a host over a limit gets 450 4.7.1 (`onExceed: reject`) or is locked out
// on every node for `lockout` (554 5.7.1, listed and liftable by the admin API); a host whose mail
// draws too many 5xx replies (`rejections`: unknown users, refused spam) is locked out too. The
// lock-outs are the senders' suspension machinery with a kind of their own ('hosts') and an end.
// smtp-gated is the reference: per-host limits and lock-out on an intercepting proxy.
import type { HostsConfig } from '@smtp-lb/config';
import type { ClientLimits, Suspension, Suspensions } from '@smtp-lb/ledger';
import type { Reply } from '@smtp-lb/upstream';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { replies } from '../replies.js';

export interface HostPolicyDeps {
  config: () => HostsConfig;
  limits: ClientLimits;
  lockouts: Suspensions;
  metrics: Metrics;
  nodeId: string;
}

export class HostPolicy {
  readonly #d: HostPolicyDeps;

  constructor(deps: HostPolicyDeps) {
    this.#d = deps;
  }

  get lockouts(): Suspensions {
    return this.#d.lockouts;
  }

  list(): Promise<Suspension[]> {
    return this.#d.lockouts.list();
  }

  /** An operator lifts the lock-out: the host's counts start afresh. Throws when Redis is unreachable. */
  async lift(host: string): Promise<boolean> {
    const lifted = await this.#d.lockouts.lift(host);
    await Promise.all(
      ['host-messages', 'host-recipients', 'host-domains', 'host-rejections'].map((k) =>
        this.#d.limits.reset(k, host),
      ),
    );
    return lifted;
  }

  /** MAIL FROM: a locked-out host is refused; the message counts. */
  async atMail(host: string, log: Logger): Promise<Reply | undefined> {
    if (await this.#d.lockouts.get(host)) {
      log.info({ host }, 'MAIL from a locked-out host');
      return replies.hostLockedOut();
    }
    return this.#count(host, 'messages', log);
  }

  /** RCPT TO: the recipient counts, and its domain when the host has not used it in the window. */
  async atRcpt(host: string, domain: string, log: Logger): Promise<Reply | undefined> {
    const over = await this.#count(host, 'recipients', log);
    if (over) return over;
    const rate = this.#d.config().limits.domains;
    if (rate.limit === 0) return undefined;
    const seen = await this.#d.limits.hit('host-domain-seen', `${host} ${domain}`, 1, rate.window);
    return seen.count > 1 ? undefined : this.#count(host, 'domains', log);
  }

  /** The reply a command of the host got, from a destination or from us: counted, and 5xx as rejections. */
  async afterReply(host: string, command: 'RCPT' | 'DATA', r: Reply, log: Logger): Promise<void> {
    this.#d.metrics.destinationReplies.inc({ client: host, command, class: `${Math.floor(r.code / 100)}xx` });
    const rate = this.#d.config().rejections;
    if (r.code < 500 || rate.limit === 0) return;
    const hit = await this.#d.limits.hit('host-rejections', host, rate.limit, rate.window);
    if (!hit.ok) await this.#lockOut(host, `rejections over ${rate.limit} per ${seconds(rate.window)}s`, log);
  }

  async #count(
    host: string,
    what: 'messages' | 'recipients' | 'domains',
    log: Logger,
  ): Promise<Reply | undefined> {
    const config = this.#d.config();
    const rate = config.limits[what];
    if (rate.limit === 0) return undefined;
    const hit = await this.#d.limits.hit(`host-${what}`, host, rate.limit, rate.window);
    if (hit.ok) return undefined;
    if (config.onExceed === 'reject') {
      log.info(
        { host, what, count: hit.count, limit: rate.limit, windowMs: rate.window },
        'host over its limit',
      );
      return replies.hostOverLimit();
    }
    await this.#lockOut(host, `${what} over ${rate.limit} per ${seconds(rate.window)}s`, log);
    return replies.hostLockedOut();
  }

  async #lockOut(host: string, reason: string, log: Logger): Promise<void> {
    const since = Date.now();
    const isNew = await this.#d.lockouts
      .suspend({ user: host, since, reason, node: this.#d.nodeId, until: since + this.#d.config().lockout })
      .catch((err: unknown) => {
        // Redis unreachable: this node still refuses the host (it remembers what it locked out).
        log.warn({ host, err: { message: (err as Error).message } }, 'lock-out not stored in Redis');
        return true;
      });
    if (isNew) {
      this.#d.metrics.hostLockouts.inc();
      log.warn({ host, reason, forMs: this.#d.config().lockout }, 'host locked out');
    }
  }
}

function seconds(ms: number): number {
  return Math.round(ms / 1000);
}
