// A private DNS server for tests: Debian's dnsmasq on a free loopback port, answering only from
// the records the test gives (DNSBL listings as A records; MX, A/AAAA and CNAME records for mail
// routing), NXDOMAIN for the rest of the given zones, nothing from /etc/hosts, resolv.conf or
// /etc/dnsmasq.conf. Queries are logged, so a test can count what reached the server (a cache test).
import { freePort } from './free-port.js';
import { type ManagedProcess, startProcess } from './process.js';

const HOST = '127.0.0.1';

export interface DnsmasqOptions {
  /** name → A record(s), e.g. { '2.0.0.127.bl.test': '127.0.0.2' }. A name also covers its subdomains. */
  records?: Record<string, string | string[]>;
  /** Zones answered NXDOMAIN for every name without a record (e.g. ['bl.test']). */
  zones?: string[];
  /** MX records by domain, `'null'` for a null MX (RFC 7505). */
  mx?: Record<string, Array<{ host: string; preference: number }> | 'null'>;
  /** name → A and AAAA addresses (dnsmasq's --host-record). */
  hosts?: Record<string, string[]>;
  /** alias → target (the target must be one of `hosts`). */
  cnames?: Record<string, string>;
  /** Zones answered from these records only: NXDOMAIN for other names, NODATA for other types. */
  local?: string[];
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
  /** Names queried for one record type (MX, A, AAAA...), in order. */
  queriesOf(type: string): string[];
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
  for (const zone of options.local ?? []) args.push(`--local=/${zone}/`);
  for (const [domain, mx] of Object.entries(options.mx ?? {})) {
    if (mx === 'null') args.push(`--mx-host=${domain},.,0`);
    else for (const m of mx) args.push(`--mx-host=${domain},${m.host},${m.preference}`);
  }
  for (const [name, ips] of Object.entries(options.hosts ?? {}))
    args.push(`--host-record=${name},${ips.join(',')}`);
  for (const [alias, target] of Object.entries(options.cnames ?? {})) args.push(`--cname=${alias},${target}`);
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
    queriesOf: (type) =>
      [...proc.output().matchAll(/query\[(\w+)\] (\S+) from/g)]
        .filter((m) => m[1] === type)
        .map((m) => m[2]!),
    output: () => proc.output(),
    async stop() {
      await proc.stop();
    },
  };
}
