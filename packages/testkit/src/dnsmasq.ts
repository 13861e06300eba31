// A private DNS server for tests: Debian's dnsmasq on a free loopback port, answering only from
// the records the test gives (DNSBL listings as A records), NXDOMAIN for the rest of the given
// zones, nothing from /etc/hosts, resolv.conf or /etc/dnsmasq.conf. Queries are logged, so a test
// can count what reached the server (a cache test).
import { freePort } from './free-port.js';
import { type ManagedProcess, startProcess } from './process.js';

const HOST = '127.0.0.1';

export interface DnsmasqOptions {
  /** name → A record(s), e.g. { '2.0.0.127.bl.test': '127.0.0.2' }. A name also covers its subdomains. */
  records?: Record<string, string | string[]>;
  /** Zones answered NXDOMAIN for every name without a record (e.g. ['bl.test']). */
  zones?: string[];
  /** TTL of the answers, seconds. Default 60. */
  ttl?: number;
  /** Default: a free port. */
  port?: number;
}

export interface Dnsmasq {
  readonly host: string;
  readonly port: number;
  /** host:port, as a resolver setting. */
  readonly address: string;
  /** Names queried so far, in order (from dnsmasq's query log). */
  queries(): string[];
  output(): string;
  stop(): Promise<void>;
}

export async function startDnsmasq(options: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const port = options.port ?? (await freePort(HOST));
  const args = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    `--port=${port}`,
    `--listen-address=${HOST}`,
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--log-queries',
    '--log-facility=-',
    `--local-ttl=${options.ttl ?? 60}`,
    '--pid-file=',
    '--user=nobody',
  ];
  for (const zone of options.zones ?? []) args.push(`--address=/${zone}/`);
  for (const [name, value] of Object.entries(options.records ?? {})) {
    for (const ip of Array.isArray(value) ? value : [value]) args.push(`--address=/${name}/${ip}`);
  }
  const proc: ManagedProcess = startProcess('dnsmasq', 'dnsmasq', args);
  try {
    await proc.waitForOutput(/started, version/, 10_000);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    queries: () => [...proc.output().matchAll(/query\[A\] (\S+) from/g)].map((m) => m[1]!),
    output: () => proc.output(),
    async stop() {
      await proc.stop();
    },
  };
}
