// The metric catalogue of DESIGN.md (prefix smtp_lb_), on a registry of its own so two nodes in one
// process (tests) do not collide. Gauges that mirror other state are filled on scrape (collect).
import {
  Counter,
  type CounterConfiguration,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type LabelValues,
  Registry,
} from 'prom-client';

/** One label set of a SummedCounter: what was counted since the last scrape. */
interface Pending<T extends string> {
  labels: LabelValues<T>;
  sum: number;
}

/**
 * A Counter for the message path: inc() with labels adds to a plain number found through one Map per
 * label (by the label values, no string built), and the sums reach prom-client when it is scraped.
 * prom-client itself builds and hashes a key from the label object on every inc(), its label
 * children too (v15 binds them to the same inc). The first inc() of a label set, and any value other
 * than a positive finite number, go through prom-client at once, so its checks still apply.
 */
class SummedCounter<T extends string> extends Counter<T> {
  readonly #names: readonly T[];
  readonly #byValue = new Map<unknown, unknown>();
  readonly #pending: Pending<T>[] = [];
  readonly #direct: (labels: LabelValues<T>, value?: number) => void;

  constructor(config: CounterConfiguration<T> & { labelNames: readonly T[] }) {
    super({
      ...config,
      collect(this: Counter<T>) {
        (this as SummedCounter<T>).flush();
      },
    });
    this.#names = config.labelNames;
    const direct = this.inc.bind(this) as (labels: LabelValues<T>, value?: number) => void;
    // prom-client sets inc on the instance in its constructor: replaced here, after it.
    this.inc = ((labels?: LabelValues<T> | number, value?: number) => {
      if (typeof labels !== 'object' || labels === null) return direct(labels as LabelValues<T>, value);
      const by = value ?? 1;
      if (!(by > 0 && Number.isFinite(by))) return direct(labels, value);
      const names = this.#names;
      const last = names.length - 1;
      let map = this.#byValue;
      for (let i = 0; i < last; i++) {
        const v = labels[names[i]!];
        let next = map.get(v) as Map<unknown, unknown> | undefined;
        if (!next) {
          next = new Map();
          map.set(v, next);
        }
        map = next;
      }
      const key = labels[names[last]!];
      const pending = map.get(key) as Pending<T> | undefined;
      if (pending) {
        pending.sum += by;
        return;
      }
      direct(labels, by);
      const entry = { labels, sum: 0 };
      map.set(key, entry);
      this.#pending.push(entry);
    }) as Counter<T>['inc'];
    this.#direct = direct;
  }

  /** Hands the sums to prom-client (on scrape). */
  flush(): void {
    for (const p of this.#pending) {
      if (p.sum === 0) continue;
      const sum = p.sum;
      p.sum = 0;
      this.#direct(p.labels, sum);
    }
  }
}

export class Metrics {
  readonly registry = new Registry();
  #refresh: (() => void) | undefined;

  readonly sessionsActive = new Gauge({
    name: 'smtp_lb_sessions_active',
    help: 'Client sessions open on this node',
    registers: [this.registry],
  });
  readonly sessionsTotal = new SummedCounter({
    name: 'smtp_lb_sessions_total',
    help: 'Client sessions ended, by listener and outcome',
    labelNames: ['listener', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly transactionsTotal = new SummedCounter({
    name: 'smtp_lb_transactions_total',
    help: 'Mail transactions that reached the end of DATA, by pool, backend and result',
    labelNames: ['pool', 'backend', 'result'] as const,
    registers: [this.registry],
  });
  readonly backendReplies = new SummedCounter({
    name: 'smtp_lb_backend_replies_total',
    help: 'Replies (or failures) from backends, by command and code',
    labelNames: ['backend', 'command', 'code'] as const,
    registers: [this.registry],
  });
  readonly backendReplyDefects = new Counter({
    name: 'smtp_lb_backend_reply_defects_total',
    help: 'Backend replies relayed with control bytes (made ?), lines over 512 octets (split) or text that is not UTF-8 (passed as it came), by backend and defect',
    labelNames: ['backend', 'defect'] as const,
    registers: [this.registry],
  });
  readonly backendConnections = new Gauge({
    name: 'smtp_lb_backend_connections',
    help: 'Connections to a backend held by this node (scope=node) or the whole cluster (scope=cluster)',
    labelNames: ['backend', 'scope'] as const,
    registers: [this.registry],
    // Registered before every other gauge that mirrors node state: refreshing here fills them all
    // before the scrape serialises them.
    collect: () => this.#refresh?.(),
  });
  readonly backendMaxConnections = new Gauge({
    name: 'smtp_lb_backend_max_connections',
    help: 'Cluster-wide connection cap of a backend',
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });
  readonly admissionWait = new Histogram({
    name: 'smtp_lb_admission_wait_seconds',
    help: 'Time sessions waited for a free backend slot',
    labelNames: ['pool'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly admissionRejections = new Counter({
    name: 'smtp_lb_admission_rejections_total',
    help: 'Sessions refused a backend slot, by reason',
    labelNames: ['pool', 'reason'] as const,
    registers: [this.registry],
  });
  readonly backendConnect = new Histogram({
    name: 'smtp_lb_backend_connect_seconds',
    help: 'Time to a usable backend connection (connect, greeting, EHLO, TLS, XCLIENT)',
    labelNames: ['backend'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly transactionDuration = new Histogram({
    name: 'smtp_lb_transaction_duration_seconds',
    help: 'DATA phase duration, from DATA to the final reply',
    labelNames: ['pool'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  });
  readonly ledgerDegraded = new Gauge({
    name: 'smtp_lb_ledger_degraded',
    help: '1 while the shared ledger (Redis) is unreachable for some backend and this node keeps to a local share there',
    registers: [this.registry],
  });
  readonly ledgerBackendDegraded = new Gauge({
    name: 'smtp_lb_ledger_backend_degraded',
    help: "1 while this backend's keys in the shared ledger are out of reach (on a Redis Cluster, its master) and this node keeps to a local share there",
    labelNames: ['backend'] as const,
    registers: [this.registry],
  });
  readonly ledgerErrors = new Counter({
    name: 'smtp_lb_ledger_errors_total',
    help: 'Errors talking to the ledger',
    registers: [this.registry],
  });
  readonly backendsEjected = new Gauge({
    name: 'smtp_lb_backends_ejected',
    help: "Backends of a pool ejected by this node's outlier detection now",
    labelNames: ['pool'] as const,
    registers: [this.registry],
  });
  readonly outlierEjections = new Counter({
    name: 'smtp_lb_outlier_ejections_total',
    help: 'Ejections by outlier detection, by pool, backend and reason (failures, deferrals)',
    labelNames: ['pool', 'backend', 'reason'] as const,
    registers: [this.registry],
  });
  readonly discoveryBackends = new Gauge({
    name: 'smtp_lb_discovery_backends',
    help: 'Backends known per pool and state',
    labelNames: ['pool', 'state'] as const,
    registers: [this.registry],
  });
  readonly discoveryUpdates = new Counter({
    name: 'smtp_lb_discovery_updates_total',
    help: 'Backend set changes seen per pool',
    labelNames: ['pool'] as const,
    registers: [this.registry],
  });
  readonly discoveryStale = new Gauge({
    name: 'smtp_lb_discovery_stale',
    help: '1 while a pool keeps its last known backend set because discovery is unreachable',
    labelNames: ['pool'] as const,
    registers: [this.registry],
  });
  readonly discoveryErrors = new Counter({
    name: 'smtp_lb_discovery_errors_total',
    help: 'Failed discovery queries per pool, by error code',
    labelNames: ['pool', 'code'] as const,
    registers: [this.registry],
  });
  readonly tarpitSessionsActive = new Gauge({
    name: 'smtp_lb_tarpit_sessions_active',
    help: 'Sessions being slowed down (tarpitted) on this node',
    registers: [this.registry],
  });
  readonly recipientLookups = new SummedCounter({
    name: 'smtp_lb_recipient_lookups_total',
    help: 'Recipient map lookups by map and result (found, unknown, error, cache_found, cache_unknown)',
    labelNames: ['map', 'result'] as const,
    registers: [this.registry],
  });
  readonly recipientLookupSeconds = new Histogram({
    name: 'smtp_lb_recipient_lookup_seconds',
    help: 'Time a recipient map source took to answer (cached answers not included)',
    labelNames: ['map'] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5],
    registers: [this.registry],
  });

  readonly authAttempts = new Counter({
    name: 'smtp_lb_auth_attempts_total',
    help: 'AUTH attempts by listener and result (ok, fail: bad credentials, error: verifier failed, blocked: too many failures)',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  #suspended: (() => Promise<number>) | undefined;
  readonly sendersSuspended = new Gauge({
    name: 'smtp_lb_senders_suspended',
    help: 'Authenticated users suspended cluster-wide (senders.onExceed: suspend)',
    registers: [this.registry],
    collect: async () => {
      // Redis unreachable: the last value stays.
      const n = await this.#suspended?.().catch(() => undefined);
      if (n !== undefined) this.sendersSuspended.set(n);
    },
  });

  /** Sets how the number of suspended users is read on each scrape. */
  onSuspendedScrape(count: () => Promise<number>): void {
    this.#suspended = count;
  }

  readonly destinationReplies = new SummedCounter({
    name: 'smtp_lb_destination_replies_total',
    help: 'Replies to RCPT and at the end of DATA on outbound listeners, by client host, command and class (2xx, 4xx, 5xx): backscatter and abuse signals',
    labelNames: ['client', 'command', 'class'] as const,
    registers: [this.registry],
  });
  readonly hostLockouts = new Counter({
    name: 'smtp_lb_host_lockouts_total',
    help: 'Client hosts of outbound listeners locked out by this node (over a hosts limit or rejections)',
    registers: [this.registry],
  });

  readonly scanVerdicts = new SummedCounter({
    name: 'smtp_lb_scan_verdicts_total',
    help: 'Content scans by scanner and outcome (accept, reject, defer, discard, error, oversize)',
    labelNames: ['scanner', 'action'] as const,
    registers: [this.registry],
  });
  readonly scanDuration = new Histogram({
    name: 'smtp_lb_scan_duration_seconds',
    help: 'From the start of DATA to the verdict of a content scanner',
    labelNames: ['scanner'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly scanModifications = new Counter({
    name: 'smtp_lb_scan_modifications_total',
    help: 'Messages a scanner asked to change (headers, body, recipients), which streaming cannot apply',
    labelNames: ['scanner'] as const,
    registers: [this.registry],
  });

  /** Sets the function that copies node state (counts, caps, backend sets) into the gauges. */
  onScrape(refresh: () => void): void {
    this.#refresh = refresh;
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
