// The node's content scanners (`scanners:`), one driver object each, and the scan stage a listener's
// sessions get for its `scan:` list. A reload keeps the scanners whose settings did not change (their
// pools and kept connections); sessions that began with a replaced one keep it until they end (its
// idle HTTP connections close by keep-alive timeout, a milter's with its sessions).
import { isDeepStrictEqual } from 'node:util';
import type { ListenerConfig, ScannerConfig } from '@smtp-lb/config';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { MilterScanner } from './milter.js';
import { RspamdScanner } from './rspamd.js';
import { type ConfiguredScanner, type ScanStageDeps, SessionScan } from './scan-stage.js';
import type { Scanner } from './scanner.js';

function build(c: ScannerConfig): Scanner {
  if (c.milter) {
    return new MilterScanner({
      name: c.name,
      host: c.milter.address.host,
      port: c.milter.address.port,
      timeout: c.timeout,
    });
  }
  return new RspamdScanner({ name: c.name, url: c.rspamd!.url, timeout: c.timeout });
}

export class ScanRuntime {
  #scanners = new Map<string, ConfiguredScanner>();
  readonly #deps: ScanStageDeps;
  readonly #warned = new Set<string>();

  constructor(config: Record<string, ScannerConfig>, metrics: Metrics) {
    this.#deps = {
      metrics,
      modificationsSeen: (name) => {
        if (this.#warned.has(name)) return false;
        this.#warned.add(name);
        return true;
      },
    };
    this.update(config);
  }

  update(config: Record<string, ScannerConfig>): void {
    const next = new Map<string, ConfiguredScanner>();
    for (const [name, c] of Object.entries(config)) {
      const old = this.#scanners.get(name);
      next.set(name, old && isDeepStrictEqual(old.config, c) ? old : { config: c, scanner: build(c) });
    }
    this.#scanners = next;
  }

  /** The scan stage for a new session of `listener`; undefined when it scans nothing. */
  forSession(listener: ListenerConfig, id: string, log: Logger): SessionScan | undefined {
    if (listener.scan.length === 0) return undefined;
    const scanners = listener.scan.flatMap((n) => this.#scanners.get(n) ?? []);
    if (scanners.length === 0) return undefined;
    return new SessionScan(scanners, this.#deps, { id, localHostname: listener.hostname }, log);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#scanners.values()].map((s) => s.scanner.close()));
    this.#scanners.clear();
  }
}
