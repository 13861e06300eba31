// What AUTH costs a node: sessions per second through one node in front of a capture backend, each
// session EHLO, (AUTH PLAIN,) MAIL, RCPT, a small DATA, QUIT, on a listener without AUTH, with
// `verify: file` (htpasswd -B cost 10, the default; no cache), the same with `cacheTtl` (a hit after
// the first session) and `verify: http` (an in-process auth_http service answering OK at once), new
// connections each session and, once per listener, one kept connection sending every message after
// a single AUTH. Every round runs each variant once, interleaved, so machine noise hits them alike;
// medians of the rounds. The load generator shares the machine (and the node's process) with the node.
// Run: node test/dist/bench/auth-cost.js [sessions] [concurrency]
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeTempDir, startWireBackend } from '@smtp-lb/testkit';
import { startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';
import { median } from './stats.js';

const sessions = Number(process.argv[2] ?? 200);
const width = Number(process.argv[3] ?? 8);
const ROUNDS = 3;
const USER = 'bench@example.com';
const PASS = 'bench-password';
const AUTH = `AUTH PLAIN ${Buffer.from(`\0${USER}\0${PASS}`).toString('base64')}`;

async function expect(c: SmtpDialog, line: string, code: number): Promise<void> {
  const r = await c.cmd(line);
  if (r.code !== code) throw new Error(`${line.slice(0, 12)} answered ${r.raw}`);
}

async function message(c: SmtpDialog): Promise<void> {
  await expect(c, `MAIL FROM:<${USER}>`, 250);
  await expect(c, 'RCPT TO:<rcpt@example.net>', 250);
  await expect(c, 'DATA', 354);
  await expect(c, 'Subject: bench\r\n\r\nhello\r\n.', 250);
}

async function session(port: number, auth: boolean): Promise<void> {
  const c = await SmtpDialog.open(port);
  try {
    await c.read();
    await expect(c, 'EHLO bench.test', 250);
    if (auth) await expect(c, AUTH, 235);
    await message(c);
    await c.cmd('QUIT');
  } finally {
    c.close();
  }
}

/** Sessions per second, `width` at once. */
async function newConnections(port: number, auth: boolean): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next++ < sessions) await session(port, auth);
    }),
  );
  return (sessions * 1000) / (performance.now() - t0);
}

/** Messages per second on `width` kept connections, each authenticated once. */
async function keptConnections(port: number, auth: boolean): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: width }, async () => {
      const c = await SmtpDialog.open(port);
      try {
        await c.read();
        await expect(c, 'EHLO bench.test', 250);
        if (auth) await expect(c, AUTH, 235);
        while (next++ < sessions) {
          await message(c);
          await expect(c, 'RSET', 250);
        }
        await c.cmd('QUIT');
      } finally {
        c.close();
      }
    }),
  );
  return (sessions * 1000) / (performance.now() - t0);
}

async function main(): Promise<void> {
  const dir = await makeTempDir('auth-bench');
  // The wire recorder as the sink: no smtp-server greeting wait (100 ms) in the figures, as in earlier runs.
  const backend = await startWireBackend();
  const users = join(dir.path, 'users');
  execFileSync('htpasswd', ['-cbB', '-C', '10', users, USER, PASS]);
  const auth = createServer((_req, res) => res.writeHead(200, { 'Auth-Status': 'OK' }).end());
  await new Promise<void>((r) => auth.listen(0, '127.0.0.1', r));
  const authUrl = `http://127.0.0.1:${(auth.address() as { port: number }).port}/auth`;
  const sub = (name: string, auth: string) =>
    `  - { name: ${name}, listen: 127.0.0.1:0, hostname: submit.test, pool: default, role: submission, auth: ${auth} }`;
  const node = await startNode(`
node: { id: auth-bench }
listeners:
  - { name: none, listen: 127.0.0.1:0, hostname: mx.test, pool: default }
${sub('file', `{ verify: file, file: "${users}", allowPlaintext: true }`)}
${sub('cached', `{ verify: file, file: "${users}", allowPlaintext: true, cacheTtl: 10m }`)}
${sub('http', `{ verify: http, http: { url: "${authUrl}" }, allowPlaintext: true }`)}
pools:
  default: { static: [{ address: ${backend.address}, maxConnections: 1000 }], tls: none }
senders: { ownAddresses: false }
log: { level: warn }
admin: { listen: 127.0.0.1:0 }
`);
  try {
    const variants: Array<[string, string, boolean]> = [
      ['no AUTH', 'none', false],
      ['file, bcrypt cost 10', 'file', true],
      ['file, cached', 'cached', true],
      ['http (auth_http, local)', 'http', true],
    ];
    const port = (name: string) => node.node.addresses.get(name)!.port;
    for (const [, name, a] of variants) await session(port(name), a); // warm-up (and the cache)
    const results = Object.fromEntries(
      variants.map(([label]) => [label, { fresh: [] as number[], kept: [] as number[] }]),
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const [label, name, a] of variants) {
        results[label]!.fresh.push(await newConnections(port(name), a));
        results[label]!.kept.push(await keptConnections(port(name), a));
      }
    }
    const base = results['no AUTH']!;
    console.log(
      `AUTH cost: ${sessions} sessions per measurement, ${width} at once, median of ${ROUNDS} rounds`,
    );
    console.log(
      '| listener | new connections, sessions/s | vs no AUTH | kept connections, msg/s | vs no AUTH |',
    );
    console.log('|---|---|---|---|---|');
    for (const [label] of variants) {
      const r = results[label]!;
      console.log(
        `| ${label} | ${median(r.fresh).toFixed(0)} | ${(median(r.fresh) / median(base.fresh)).toFixed(2)} | ${median(r.kept).toFixed(0)} | ${(median(r.kept) / median(base.kept)).toFixed(2)} |`,
      );
    }
  } finally {
    await node.stop();
    await new Promise((r) => auth.close(r));
    await backend.close();
    await dir.remove();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
