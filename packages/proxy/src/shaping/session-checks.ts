// The in-session checks of one client, by stage (postscreen_smtpd's counterpart; the front door is
// the stage before the greeting). Each stage gets what it needs (the transaction, read-only, and the
// command's argument), never the session, and answers with a reply that refuses the command or with
// nothing to let it go on (undefined at once when it has nothing to ask: no promise per command):
//   atMail          MAIL accepted by the syntax checks: the client's message rate.
//   atRcpt          before routing and before any backend is bound: the listener's recipient map
//                   (`recipients`: 550 5.1.1 for an unknown recipient, 451 4.3.0 when the map
//                   cannot answer), then the policy service at RCPT.
//   afterRcptReply  the reply the client is about to get: rejected recipients lead to the tarpit.
//   atData          the client's final dot is in, ours to the backend is held until this answers:
//                   the policy service at END-OF-MESSAGE (a content scanner's verdict joins here).
//   atAuth          AUTH decoded by the front: failed attempts per client and per user, cluster-wide,
//                   around the listener's verifier (auth/authenticator.ts).
// atMail and atRcpt also apply the rules about an authenticated sender (auth/sender-policy.ts).
// `pace` holds the replies of a session tarpitted midway.
import type { ListenerConfig } from '@smtp-lb/config';
import type { RecipientMap } from '@smtp-lb/discovery';
import type { ClientSlot } from '@smtp-lb/ledger';
import type { Reply } from '@smtp-lb/upstream';
import type { Authenticator } from '../auth/authenticator.js';
import type { BindForAuth } from '../auth/backend-verifier.js';
import type { SenderPolicy } from '../auth/sender-policy.js';
import type { AuthResult } from '../auth/verifier.js';
import type { SaslCredentials } from '../front/sasl.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { replies } from '../replies.js';
import { domainOf, type MapLookup, rcptLookups } from '../router.js';
import type { Client, SmtpAddress, Transaction } from '../transaction.js';
import type { ClientState } from './client-state.js';
import type { HostPolicy } from './host-policy.js';
import type { PolicyVerdict } from './policy-client.js';
import type { ShapingRuntime } from './shaping-runtime.js';

export interface SessionChecksDeps {
  shaping: ShapingRuntime;
  metrics: Metrics;
  listener: ListenerConfig;
  recipientMap: (name: string) => RecipientMap | undefined;
  /** The listener's AUTH (submission and outbound listeners with `auth`). */
  auth?: Authenticator;
  senders: SenderPolicy;
  /** Outbound listeners: per client host limits and lock-out. */
  hosts?: HostPolicy;
}

/** What atAuth decided: the reply, and on success who the user is (and the backend that said so). */
export interface AuthOutcome {
  reply: Reply;
  result?: AuthResult;
}

export class SessionChecks {
  readonly #d: SessionChecksDeps;
  readonly #client: ClientState;
  readonly #log: Logger;
  /** RCPT replies of 400 or more in this session. */
  #rejected = 0;

  constructor(deps: SessionChecksDeps, client: ClientState, log: Logger) {
    this.#d = deps;
    this.#client = client;
    this.#log = log;
  }

  /**
   * AUTH with decoded credentials. A client or a user name over its failed attempts is refused
   * before the verifier is asked (421 4.7.0, or the tarpit); each failure is counted for both, in
   * Redis when the node has one, so a guesser moving between nodes gains nothing.
   */
  async atAuth(
    client: Client,
    creds: SaslCredentials,
    attempt: number,
    bind: BindForAuth,
  ): Promise<AuthOutcome> {
    const auth = this.#d.auth;
    const listener = this.#d.listener.name;
    const count = (result: string) => this.#d.metrics.authAttempts.inc({ listener, result });
    if (!auth) return { reply: replies.authMechanism() };
    const { perClient, perUser, window, action } = auth.config.failures;
    const limits = this.#d.shaping.limits;
    const user = creds.user.toLowerCase();
    const [byClient, byUser] = await Promise.all([
      perClient > 0
        ? limits.peek(`auth-fail-client:${listener}`, client.address, perClient, window)
        : undefined,
      perUser > 0 ? limits.peek(`auth-fail-user:${listener}`, user, perUser, window) : undefined,
    ]);
    if (byClient?.ok === false || byUser?.ok === false) {
      const failures = byClient?.ok === false ? 'client' : 'user';
      if (action === 'reject') {
        count('blocked');
        this.#log.warn({ user: creds.user, failures, action }, 'AUTH refused: too many failed attempts');
        return { reply: replies.authTooManyFailures() };
      }
      // The tarpit: every reply of the session is held from now on; the attempt itself goes on, so
      // the owner of the account still gets in, slowly, and a guesser gets one try per delay.
      this.#log.warn({ user: creds.user, failures, action }, 'AUTH tarpitted: too many failed attempts');
      this.#tarpit('auth-failures');
    }
    if (creds.authzid !== '' && creds.authzid !== creds.user) {
      count('fail');
      this.#log.info({ user: creds.user, authzid: creds.authzid }, 'AUTH refused: authzid is not the user');
      await this.#failed(client, user);
      return { reply: replies.authzidRefused() };
    }
    const result = await auth.check(
      {
        user: creds.user,
        password: creds.password,
        clientAddress: client.address,
        clientPort: client.port,
        helo: client.helo,
        listener,
        mechanism: creds.mechanism,
        attempt,
        sid: client.id,
      },
      bind,
    );
    count(result.kind);
    if (result.kind === 'ok') {
      this.#log.info({ user: result.user, mechanism: creds.mechanism, verify: auth.verify }, 'authenticated');
      return { reply: replies.authSucceeded(), result };
    }
    if (result.kind === 'error') {
      this.#log.warn(
        { user: creds.user, verify: auth.verify, reason: result.reason },
        'AUTH verifier failed',
      );
      return { reply: replies.authUnavailable() };
    }
    this.#log.info({ user: creds.user, mechanism: creds.mechanism, verify: auth.verify }, 'AUTH failed');
    await this.#failed(client, user);
    const reply = replies.authFailed();
    if (!result.waitMs) return { reply };
    const wait = result.waitMs;
    return new Promise((resolve) => setTimeout(() => resolve({ reply }), wait).unref());
  }

  /** A place among the user's concurrent sessions; undefined when it has too many. */
  userSession(user: string): Promise<ClientSlot | undefined> {
    return this.#d.senders.openSession(user, this.#log);
  }

  async #failed(client: Client, user: string): Promise<void> {
    const { perClient, perUser, window } = this.#d.auth!.config.failures;
    const limits = this.#d.shaping.limits;
    // Per listener (each has its own limits and window), per client and per user, cluster-wide.
    const listener = this.#d.listener.name;
    await Promise.all([
      perClient > 0
        ? limits.hit(`auth-fail-client:${listener}`, client.address, perClient, window)
        : undefined,
      perUser > 0 ? limits.hit(`auth-fail-user:${listener}`, user, perUser, window) : undefined,
    ]);
  }

  /**
   * MAIL: AUTH required before it (530 5.7.0), the rules about the authenticated sender, then the
   * message rate of the client (counted at MAIL, as Postfix's anvil does).
   */
  async atMail(client: Client, from: SmtpAddress): Promise<Reply | undefined> {
    if (this.#d.auth?.config.required && client.user === undefined) return replies.authRequired();
    const { shaping } = this.#d;
    const rate = shaping.config.limits.messageRate;
    const state = this.#client;
    // The client's message count goes out with the sender's checks (one Redis round trip, not
    // two): like Postfix's anvil, which counts MAIL before the sender restrictions, it counts a
    // MAIL that the sender rules refuse too. A failed count is no count (fail open).
    const counting =
      state.allowed || rate.limit === 0
        ? undefined
        : shaping.limits.hit('msg', state.address, rate.limit, rate.window).catch(() => undefined);
    const sender = await this.#d.senders.atMail(client, from.address, this.#log);
    if (sender) return sender;
    const host = await this.#d.hosts?.atMail(client.address, this.#log);
    if (host) return host;
    const hit = await counting;
    if (!hit || hit.ok) return undefined;
    const action = shaping.config.limits.action;
    this.#log.info(
      { count: hit.count, limit: rate.limit, windowMs: rate.window, action },
      'client over its message rate',
    );
    if (action === 'reject') {
      this.#d.metrics.sessionsTotal.inc({ listener: this.#d.listener.name, outcome: 'refused-message-rate' });
      return replies.messageRate();
    }
    this.#tarpit('message-rate');
    return undefined;
  }

  /** Before the recipient is routed or any backend bound for it. */
  async atRcpt(
    tx: Transaction,
    to: SmtpAddress,
    lookup: MapLookup = rcptLookups(to.address),
  ): Promise<Reply | undefined> {
    const unknown = await this.#verifyRecipient(to, lookup);
    if (unknown) return unknown;
    const sender = await this.#d.senders.atRcpt(tx.client, this.#log);
    if (sender) return sender;
    const host = await this.#d.hosts?.atRcpt(tx.client.address, domainOf(to.address), this.#log);
    if (host) return host;
    const policy = this.#d.shaping.policy;
    if (!policy?.config.at.includes('rcpt')) return undefined;
    return policy
      .check(policyRequest(tx, 'RCPT', to.address), `<${to.address}>: Recipient address rejected`)
      .then((verdict) => this.#verdictReply(verdict, 'RCPT'));
  }

  /**
   * The listener's recipient map (Postfix's relay_recipient_maps): a recipient it does not know is
   * refused here, so a dictionary attack costs no backend connection. A map that cannot answer gets
   * 451 4.3.0: neither a false 550 nor a recipient let through unchecked.
   */
  async #verifyRecipient(to: SmtpAddress, lookup: MapLookup): Promise<Reply | undefined> {
    const check = this.#d.listener.recipients;
    if (!check) return undefined;
    const map = this.#d.recipientMap(check.map);
    const found = map ? await lookup(map) : { status: 'error' as const, reason: 'map not loaded' };
    if (found.status === 'found') return undefined;
    if (found.status === 'error') {
      this.#log.warn({ to: to.address, map: check.map, reason: found.reason }, 'recipient map failed');
      return replies.recipientLookupFailed(to.address);
    }
    if (check.unknown === 'pass') {
      this.#log.debug({ to: to.address, map: check.map }, 'recipient unknown to the map; passed on');
      return undefined;
    }
    return replies.unknownRecipient(to.address);
  }

  /** RCPT replies >= 400 count; at the configured number the session is tarpitted. */
  afterRcptReply(tx: Transaction, r: Reply): void {
    this.#afterReply(tx, 'RCPT', r);
    const client = this.#client;
    const max = this.#d.shaping.config.tarpit.rejectedRecipients;
    if (client.allowed || r.code < 400) return;
    this.#rejected++;
    if (max > 0 && this.#rejected >= max && !client.tarpitted) {
      this.#log.info({ rejected: this.#rejected, max }, 'too many rejected recipients');
      this.#tarpit('rejected-recipients');
    }
  }

  /** The reply at the end of DATA, about to go to the client. */
  afterDataReply(tx: Transaction, r: Reply): void {
    this.#afterReply(tx, 'DATA', r);
  }

  /** Outbound hosts: replies by class, and 5xx as rejections (counted off the reply path). */
  #afterReply(tx: Transaction, command: 'RCPT' | 'DATA', r: Reply): void {
    const hosts = this.#d.hosts;
    if (!hosts) return;
    hosts.afterReply(tx.client.address, command, r, this.#log).catch((err: Error) => {
      this.#log.warn({ err: { message: err.message } }, 'counting a rejection failed');
    });
  }

  /** Whether atData asks anyone: without it the final dot is not held at all. */
  get holdsFinalDot(): boolean {
    return this.#d.shaping.policy?.config.at.includes('data') === true;
  }

  /** The client's final dot is in (`size` content bytes); ours waits for this. */
  async atData(tx: Transaction, size: number): Promise<Reply | undefined> {
    const policy = this.#d.shaping.policy;
    if (!policy?.config.at.includes('data')) return undefined;
    const verdict = await policy.check(
      { ...policyRequest(tx, 'END-OF-MESSAGE', ''), size },
      'Message rejected',
    );
    const refused = this.#verdictReply(verdict, 'END-OF-MESSAGE');
    if (refused) {
      this.#log.info(
        { code: refused.code, reply: refused.lines[0] },
        'message refused by the policy service',
      );
    }
    return refused;
  }

  /** `r`, after the tarpit delay when the session was tarpitted midway. */
  pace<T extends Reply | undefined>(r: T): T | Promise<T> {
    const client = this.#client;
    // A tarpit set at admission is in the socket (every reply); one set midway delays these replies.
    if (!client.tarpitted || client.wrapped) return r;
    const delay = this.#d.shaping.config.tarpit.delay;
    return new Promise((resolve) => setTimeout(() => resolve(r), delay));
  }

  #tarpit(reason: string): void {
    const { shaping } = this.#d;
    if (shaping.enterTarpit(this.#client, reason, this.#log)) return;
    this.#log.warn(
      { reason, max: shaping.config.tarpit.maxSessions },
      'tarpit full; session goes on untarpitted',
    );
  }

  #verdictReply(verdict: PolicyVerdict, stage: string): Reply | undefined {
    if (verdict.kind === 'reply') {
      this.#log.info({ stage, action: verdict.action, code: verdict.reply.code }, 'policy service refused');
      return verdict.reply;
    }
    if (verdict.kind === 'error') {
      const defer = this.#d.shaping.policy?.config.onError === 'defer';
      this.#log.warn(
        { stage, reason: verdict.reason, onError: defer ? 'defer' : 'accept' },
        'policy service failed',
      );
      return defer ? replies.policyUnavailable() : undefined;
    }
    this.#log.debug({ stage, action: verdict.action }, 'policy service answered');
    return undefined;
  }
}

/** Postfix policy delegation attributes (SMTPD_POLICY_README) for one stage of `tx`. */
function policyRequest(tx: Transaction, state: string, recipient: string): Record<string, string | number> {
  const size = tx.mail.args.SIZE;
  const client = tx.client;
  return {
    request: 'smtpd_access_policy',
    protocol_state: state,
    protocol_name: client.proto === 'ESMTP' ? 'ESMTP' : 'SMTP',
    client_address: client.address,
    client_name: 'unknown',
    reverse_client_name: 'unknown',
    helo_name: client.helo,
    sender: tx.mail.address,
    recipient,
    recipient_count: tx.recipients.length,
    queue_id: '',
    instance: tx.id,
    size: typeof size === 'string' ? size : 0,
  };
}
