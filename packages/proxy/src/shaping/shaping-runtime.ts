// The node's shaping state, built from the top-level `shaping` section: per-client counters (in
// Redis next to the ledger, on the same target and TLS, when the ledger uses Redis, else in memory),
// the DNSBL checker, the policy service client, the allow list and the tarpit. A reload swaps the settings; the counters
// and the tarpit (with the sessions in it) stay.
import type { ShapingConfig, SmtpLbConfig } from '@smtp-lb/config';
import { type ClientLimits, MemoryClientLimits, RedisClientLimits } from '@smtp-lb/ledger';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { redisTarget } from '../redis-target.js';
import { CidrList } from './cidr.js';
import type { ClientState } from './client-state.js';
import { DnsblChecker } from './dnsbl.js';
import { PolicyClient } from './policy-client.js';
import { Tarpit } from './tarpit.js';

export class ShapingRuntime {
  readonly limits: ClientLimits;
  readonly tarpit: Tarpit;
  readonly log: Logger;
  #config: ShapingConfig;
  #allow: CidrList;
  #dnsbl: DnsblChecker | undefined;
  #policy: PolicyClient | undefined;

  private constructor(config: ShapingConfig, limits: ClientLimits, log: Logger, metrics: Metrics) {
    this.limits = limits;
    this.log = log;
    this.tarpit = new Tarpit(metrics.tarpitSessionsActive);
    this.#config = config;
    this.#allow = new CidrList(config.allow);
    this.#dnsbl = config.dnsbl && new DnsblChecker(config.dnsbl);
    this.#policy = config.policy && new PolicyClient(config.policy, log.child({ component: 'policy' }));
  }

  static async create(config: SmtpLbConfig, log: Logger, metrics: Metrics): Promise<ShapingRuntime> {
    const slog = log.child({ component: 'shaping' });
    const target = redisTarget(config.ledger);
    const limits: ClientLimits = target
      ? await RedisClientLimits.create({
          redis: target,
          nodeId: config.node.id,
          leaseTtlMs: config.ledger.leaseTtl,
          keyPrefix: config.ledger.keyPrefix,
          onError: (err) => {
            metrics.ledgerErrors.inc();
            slog.warn(
              { err: { code: err.code, message: err.message } },
              'client limits: Redis failed, letting the client in',
            );
          },
        })
      : new MemoryClientLimits();
    return new ShapingRuntime(config.shaping, limits, slog, metrics);
  }

  get config(): ShapingConfig {
    return this.#config;
  }

  get dnsbl(): DnsblChecker | undefined {
    return this.#dnsbl;
  }

  get policy(): PolicyClient | undefined {
    return this.#policy;
  }

  allowed(address: string): boolean {
    return this.#allow.has(address);
  }

  /**
   * The one way into the tarpit, at admission (front-door.ts) or midway (session-checks.ts): takes a
   * place for `client`, or says false when the node's tarpit is full (the caller decides what then).
   */
  enterTarpit(client: ClientState, reason: string, log: Logger): boolean {
    if (client.tarpitted) return true;
    const { delay, maxSessions } = this.#config.tarpit;
    const ticket = this.tarpit.enter(reason, maxSessions);
    if (!ticket) return false;
    client.ticket = ticket;
    log.info({ reason, delayMs: delay }, 'session tarpitted');
    return true;
  }

  update(config: ShapingConfig): void {
    const old = this.#config;
    this.#config = config;
    this.#allow = new CidrList(config.allow);
    if (JSON.stringify(old.dnsbl) !== JSON.stringify(config.dnsbl)) {
      this.#dnsbl?.close();
      this.#dnsbl = config.dnsbl && new DnsblChecker(config.dnsbl);
    }
    if (JSON.stringify(old.policy) !== JSON.stringify(config.policy)) {
      this.#policy?.close();
      this.#policy =
        config.policy && new PolicyClient(config.policy, this.log.child({ component: 'policy' }));
    }
  }

  async close(): Promise<void> {
    this.#dnsbl?.close();
    this.#policy?.close();
    await this.limits.close();
  }
}
