// A recipient map in an LDAP directory, through ldapts: one search per lookup key (filter from
// ldap-filter.ts), the first value of `attribute` of the first entry is the answer. A few
// connections per node, each upgraded by STARTTLS (when asked) and bound once (anonymously without
// `bindDn`), used in turn; a connection that failed or closed is dropped and opened anew on next
// use, never left to ldapts' silent reconnect, which loses the bind and STARTTLS and, when several
// operations start on an unconnected client at once, leaves them all waiting forever (seen with
// ldapts 9.2). Every operation has the map's timeout.
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { LdapMapConfig } from '@smtp-lb/config';
import { Client, type Entry } from 'ldapts';
import { expandFilter } from './ldap-filter.js';
import type { DriverState, MapDriver, MapHit } from './types.js';

export interface LdapMapOptions {
  config: LdapMapConfig;
  /** PEM text of the CAs (the config's `ca` file, read by the caller). */
  ca?: string;
  timeoutMs: number;
}

interface Slot {
  client: Client;
  /** Connected, STARTTLS and bind done. */
  ready: Promise<void>;
  /** `ready` has settled: from then on a closed connection means the slot is spent. */
  settled: boolean;
}

export class LdapMap implements MapDriver {
  readonly kind = 'ldap' as const;
  readonly #opts: LdapMapOptions;
  readonly #slots: Array<Slot | undefined>;
  readonly #tls: ConnectionOptions;
  #next = 0;
  #closed = false;

  constructor(opts: LdapMapOptions) {
    this.#opts = opts;
    this.#slots = new Array<Slot | undefined>(opts.config.connections).fill(undefined);
    const host = new URL(opts.config.url).hostname.replace(/^\[(.*)\]$/, '$1');
    this.#tls = {
      rejectUnauthorized: opts.config.verify,
      // The name the certificate is checked against; SNI only for names (RFC 6066 3).
      host,
      ...(isIP(host) ? {} : { servername: host }),
      ...(opts.ca ? { ca: opts.ca } : {}),
    };
  }

  async lookup(keys: readonly string[], signal: AbortSignal): Promise<MapHit | undefined> {
    const { base, scope, filter, attribute } = this.#opts.config;
    const slot = await this.#slot();
    try {
      for (const key of keys) {
        const expanded = expandFilter(filter, key);
        if (expanded === undefined) continue;
        const { searchEntries } = await slot.client.search(base, {
          scope,
          filter: expanded,
          attributes: attribute ? [attribute] : ['1.1'],
          // The first entry is the answer: a filter that matches more (a duplicate address, a
          // too-wide template) costs the directory and this node one entry, not all of them.
          sizeLimit: 1,
          timeLimit: Math.max(1, Math.ceil(this.#opts.timeoutMs / 1000)),
        });
        signal.throwIfAborted();
        const entry = searchEntries[0];
        if (entry) return { key, value: attribute ? firstValue(entry, attribute) : '' };
      }
      return undefined;
    } catch (err) {
      this.#drop(slot);
      throw err;
    }
  }

  state(): DriverState {
    const open = this.#slots.filter((s) => s?.client.isConnected).length;
    return { up: true, detail: `${open}/${this.#slots.length} connections open` };
  }

  async #slot(): Promise<Slot> {
    if (this.#closed) throw new Error('LDAP map closed');
    const i = this.#next;
    this.#next = (i + 1) % this.#slots.length;
    let slot = this.#slots[i];
    // Decided without awaiting, so lookups that start together share one new connection.
    if (slot?.settled && !slot.client.isConnected) {
      this.#drop(slot);
      slot = undefined;
    }
    if (!slot) {
      slot = this.#open();
      this.#slots[i] = slot;
    }
    try {
      await slot.ready;
    } catch (err) {
      this.#drop(slot);
      throw err;
    }
    return slot;
  }

  #open(): Slot {
    const { url, startTls, bindDn, bindPassword } = this.#opts.config;
    const timeout = this.#opts.timeoutMs;
    const client = new Client({
      url,
      timeout,
      connectTimeout: timeout,
      strictDN: false,
      ...(url.startsWith('ldaps:') ? { tlsOptions: this.#tls } : {}),
    });
    // One operation alone connects; every lookup waits for it. Without credentials an anonymous
    // simple bind (RFC 4513 5.1.1) is that operation.
    const ready = (async () => {
      if (startTls) await client.startTLS(this.#tls);
      await client.bind(bindDn ?? '', bindPassword ?? '');
    })();
    const slot: Slot = { client, ready, settled: false };
    ready.then(
      () => {
        slot.settled = true;
      },
      () => {
        slot.settled = true;
      },
    );
    return slot;
  }

  #drop(slot: Slot): void {
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots[i] = undefined;
    void slot.client.unbind().catch(() => {});
  }

  async close(): Promise<void> {
    this.#closed = true;
    const slots = this.#slots.splice(0).filter((s): s is Slot => s !== undefined);
    await Promise.all(slots.map((s) => s.client.unbind().catch(() => {})));
  }
}

function firstValue(entry: Entry, attribute: string): string {
  const wanted = attribute.toLowerCase();
  for (const [name, value] of Object.entries(entry)) {
    if (name.toLowerCase() !== wanted || name === 'dn') continue;
    const first = Array.isArray(value) ? value[0] : value;
    return first === undefined ? '' : Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return '';
}
