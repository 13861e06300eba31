// Recipient maps against a real slapd: lookups per second of one node's map with and without its
// cache (a file map as the in-memory floor), sequential and 32 at once; then the RCPT latency a
// listener's recipient check adds, measured through a node in front of a capture backend: a listener
// without the check, one asking slapd every time, one answering from the cache. Every round runs
// each variant once, interleaved, so machine noise hits them alike; medians of the rounds.
// Run: node test/dist/bench/recipient-lookups.js [lookups] [rcpts]
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRecipientMap, type RecipientMap } from '@smtp-lb/discovery';
import { makeTempDir, startSlapd, startWireBackend } from '@smtp-lb/testkit';
import { startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';
import { median, percentile } from './stats.js';

const lookups = Number(process.argv[2] ?? 4000);
const rcpts = Number(process.argv[3] ?? 1000);
const ROUNDS = 3;
const PEOPLE = 1000;

const address = (i: number) => `user${i % (PEOPLE * 2)}@example.com`; // half of them unknown

async function rate(map: RecipientMap, n: number, width: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const r = await map.lookup(address(next++));
        if (r.status === 'error') throw new Error(r.reason);
      }
    }),
  );
  return (n * 1000) / (performance.now() - t0);
}

async function rcptLatencies(port: number, n: number): Promise<number[]> {
  const c = await SmtpDialog.open(port);
  try {
    await c.read();
    await c.cmd('EHLO bench.test');
    await c.cmd('MAIL FROM:<bench@partner.test>');
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      // Known recipients only (the backend's RCPT is part of every variant); RSET keeps the count low.
      if (i % 500 === 499) {
        await c.cmd('RSET');
        await c.cmd('MAIL FROM:<bench@partner.test>');
      }
      const t0 = performance.now();
      const r = await c.cmd(`RCPT TO:<user${(i * 2) % PEOPLE}@example.com>`);
      out.push(performance.now() - t0);
      if (r.code !== 250) throw new Error(`RCPT answered ${r.raw}`);
    }
    await c.cmd('QUIT');
    return out;
  } finally {
    c.close();
  }
}

async function main(): Promise<void> {
  const slapd = await startSlapd();
  const dir = await makeTempDir('rcpt-bench');
  // The wire recorder as the sink: no smtp-server greeting wait (100 ms) in the figures, as in earlier runs.
  const backend = await startWireBackend();
  const maps: RecipientMap[] = [];
  try {
    const entries = Array.from({ length: PEOPLE }, (_, i) => i * 2).map(
      (i) =>
        `dn: uid=user${i},${slapd.people}\nobjectClass: inetOrgPerson\nuid: user${i}\ncn: u\nsn: u\nmail: user${i}@example.com\ndepartmentNumber: default\n`,
    );
    await slapd.add(entries.join('\n'));
    const file = join(dir.path, 'people.map');
    await writeFile(
      file,
      Array.from({ length: PEOPLE }, (_, i) => `user${i * 2}@example.com default\n`).join(''),
    );
    const ldap = (cacheTtl: number) => ({
      name: cacheTtl ? 'cached' : 'uncached',
      ldap: {
        url: slapd.url,
        base: slapd.people,
        filter: '(mail=%s)',
        scope: 'sub' as const,
        attribute: 'departmentNumber',
        startTls: false,
        verify: true,
        connections: 2,
      },
      cacheTtl,
      negativeCacheTtl: cacheTtl,
      cacheSize: 100_000,
      recipientDelimiter: '+',
      timeout: 5000,
    });
    const variants: Record<string, RecipientMap> = {
      'LDAP, no cache': await createRecipientMap(ldap(0)),
      'LDAP, cached': await createRecipientMap(ldap(600_000)),
      'file (in memory)': await createRecipientMap({ ...ldap(0), name: 'file', ldap: undefined, file }),
    };
    maps.push(...Object.values(variants));
    await rate(variants['LDAP, cached']!, PEOPLE * 2, 8); // warm the cache with every address
    const rates = Object.fromEntries(
      Object.keys(variants).map((name) => [name, { seq: [] as number[], par: [] as number[] }]),
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, map] of Object.entries(variants)) {
        const r = rates[name]!;
        r.seq.push(await rate(map, lookups, 1));
        r.par.push(await rate(map, lookups, 32));
      }
    }
    console.log(
      `recipient lookups per second, ${lookups} per measurement (half unknown), median of ${ROUNDS}`,
    );
    console.log('| map | sequential | 32 at once |');
    console.log('|---|---|---|');
    for (const [name, r] of Object.entries(rates)) {
      console.log(`| ${name} | ${median(r.seq).toFixed(0)} | ${median(r.par).toFixed(0)} |`);
    }

    const node = await startNode(`
node: { id: rcpt-bench }
listeners:
  - { name: plain, listen: 127.0.0.1:0, hostname: mx.test, pool: default }
  - { name: uncached, listen: 127.0.0.1:0, hostname: mx.test, pool: default, recipients: { map: uncached } }
  - { name: cached, listen: 127.0.0.1:0, hostname: mx.test, pool: default, recipients: { map: cached } }
pools:
  default: { static: [{ address: ${backend.address} }], tls: none }
recipientMaps:
  uncached: { ldap: { url: ${slapd.url}, base: "${slapd.people}", attribute: departmentNumber }, cacheTtl: 0 }
  cached: { ldap: { url: ${slapd.url}, base: "${slapd.people}", attribute: departmentNumber }, cacheTtl: 10m }
log: { level: warn }
admin: { listen: 127.0.0.1:0 }
`);
    try {
      const port = (name: string) => node.node.addresses.get(name)!.port;
      await rcptLatencies(port('cached'), PEOPLE); // fills the cache with every known address
      const samples: Record<string, number[][]> = { plain: [], uncached: [], cached: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const name of Object.keys(samples)) samples[name]!.push(await rcptLatencies(port(name), rcpts));
      }
      console.log(`\nRCPT round trip through a node (capture backend), ${rcpts} RCPTs per run, ms`);
      console.log('| listener | p50 | p99 | added p50 | added p99 |');
      console.log('|---|---|---|---|---|');
      const stat = (name: string, p: number) => median(samples[name]!.map((s) => percentile(s, p)));
      for (const name of Object.keys(samples)) {
        const [p50, p99] = [stat(name, 50), stat(name, 99)];
        const label = name === 'plain' ? 'no recipient check' : `check, LDAP ${name}`;
        console.log(
          `| ${label} | ${p50.toFixed(3)} | ${p99.toFixed(3)} | ${(p50 - stat('plain', 50)).toFixed(3)} | ${(p99 - stat('plain', 99)).toFixed(3)} |`,
        );
      }
    } finally {
      await node.stop();
    }
  } finally {
    await Promise.all(maps.map((m) => m.close()));
    await backend.close();
    await slapd.stop();
    await dir.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
