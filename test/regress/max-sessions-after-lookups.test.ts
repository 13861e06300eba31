// maxSessions used to be checked after the front door: a client the listener had no room for had
// already cost a DNSBL lookup, a connection-rate hit and a session slot in Redis, and the greeting
// delay. Now it is the first check. The refused client (127.0.0.9) must leave no DNS query in
// dnsmasq's log and no Redis command naming its address (MONITOR), and get its 421 well before the
// greeting delay; the admitted clients (127.0.0.7) do cost all three, so the test can tell.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { replies } from '@smtp-lb/proxy';
import {
  type CaptureBackend,
  type Dnsmasq,
  type RedisServer,
  startCaptureBackend,
  startDnsmasq,
  startRedis,
} from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { startShapingNode } from '../e2e/shaping-helpers.js';
import type { TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const DELAY = 1500;
let dns: Dnsmasq;
let redis: RedisServer;
let backend: CaptureBackend;
let monitor: Redis | undefined;
let lb: TestNode | undefined;

before(async () => {
  [dns, redis, backend] = await Promise.all([
    startDnsmasq({ zones: ['bl.test'] }),
    startRedis(),
    startCaptureBackend(),
  ]);
});
after(async () => {
  await lb?.stop();
  monitor?.disconnect();
  await Promise.all([dns?.stop(), redis?.stop(), backend?.close()]);
});

test('a client over maxSessions gets 421 4.7.0 at once: no DNSBL query, no Redis command, no greeting delay', {
  timeout: 60_000,
}, async () => {
  lb = await startShapingNode({
    backend: backend.address,
    redis: redis.url,
    keyPrefix: 'max-sessions-first',
    listener: '    maxSessions: 2',
    shaping: `  limits:
    connectionRate: { limit: 100, window: 1m }
    sessionsPerAddress: 10
  greeting: { delay: ${DELAY}ms }
  dnsbl:
    zones: [{ zone: bl.test }]
    resolvers: [${dns.address}]
    timeout: 500ms
`,
  });
  const seen: string[] = [];
  const watcher = new Redis(redis.url);
  monitor = await watcher.monitor();
  watcher.disconnect();
  monitor.on('monitor', (_time: string, args: string[]) => seen.push(args.join(' ')));
  await new Promise((r) => setTimeout(r, 100));

  // Two admitted clients fill the listener (they count while still in the greeting delay).
  const admitted = await Promise.all([
    SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.7'),
    SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.7'),
  ]);
  await new Promise((r) => setTimeout(r, 300));

  const t0 = Date.now();
  const refused = await SmtpDialog.open(lb.port, '127.0.0.1', '127.0.0.9');
  const reply = await refused.read();
  const ms = Date.now() - t0;
  assert.equal(reply.raw.trimEnd(), `421 ${replies.tooManyClients('mx.test').lines[0]}`);
  assert.ok(ms < DELAY / 2, `the refusal took ${ms} ms; the greeting delay is ${DELAY} ms`);

  for (const c of admitted) assert.equal((await c.read()).code, 220, 'admitted after the delay');
  await new Promise((r) => setTimeout(r, 200));
  for (const c of [...admitted, refused]) c.close();

  const queries = dns.queries();
  assert.ok(queries.includes('7.0.0.127.bl.test'), `the admitted client was looked up: ${queries}`);
  assert.ok(!queries.some((q) => q.startsWith('9.0.0.127.')), `no lookup for the refused one: ${queries}`);
  assert.ok(
    seen.some((c) => c.includes('127.0.0.7')),
    `Redis saw the admitted client: ${seen.slice(0, 5).join(' | ')}`,
  );
  const about = seen.filter((c) => c.includes('127.0.0.9'));
  assert.deepEqual(about, [], 'no Redis command about the refused client');
});
