// Redis round trips a session waits for (issue 16, item 5): counters that do not depend on each
// other's answers go to Redis together. Redis sits behind a relay that holds every reply 300 ms; its
// MONITOR shows when each command arrived. Counters sent one after the other would arrive at least
// 300 ms apart (the next one waits for the previous reply); sent together they arrive within a
// moment. At connect: the connection rate and the session count; at MAIL: the suspension, the
// user's message count and the client's message count. The session itself is delivered as usual.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir, startCaptureBackend, startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { holdingRelay } from '../helpers/holding-relay.js';
import { startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();
// Below the node's 1 s bound on a Redis call, with room for a loaded machine.
const HOLD_MS = 300;
/** Far below HOLD_MS: what "together" allows on a loaded machine. */
const TOGETHER_MS = 150;

test('counters that do not wait for each other reach Redis together, at connect and at MAIL', {
  timeout: 120_000,
}, async () => {
  const redis = await startRedis();
  const backend = await startCaptureBackend();
  const relay = await holdingRelay(redis.port, HOLD_MS);
  const dir = await makeTempDir('rt-e2e');
  const users = join(dir.path, 'users');
  execFileSync('htpasswd', ['-cbB', '-C', '5', users, 'alice@example.com', 'alice-pw']);
  const admin = new Redis(redis.url);
  const monitor = await admin.monitor();
  cleanup.push(
    () => dir.remove(),
    () => redis.stop(),
    () => backend.close(),
    () => relay.close(),
    () => admin.disconnect(),
    () => monitor.disconnect(),
  );
  const seen: Array<{ at: number; line: string }> = [];
  monitor.on('monitor', (time: string, args: string[], source: string) => {
    if (source !== 'lua') seen.push({ at: Number(time) * 1000, line: args.join(' ') });
  });
  const lb = await startNode(`
node: { id: rt-e2e }
listeners:
  - name: submission
    listen: 127.0.0.1:0
    hostname: rt.test
    pool: relay
    role: submission
    auth: { verify: file, file: "${users}", allowPlaintext: true }
pools:
  relay: { static: [{ address: ${backend.address} }], tls: none }
ledger: { redis: "redis://127.0.0.1:${relay.port}", keyPrefix: rt-e2e }
shaping:
  limits:
    sessionsPerAddress: 100
    connectionRate: { limit: 1000, window: 1m }
    messageRate: { limit: 1000, window: 1h }
senders:
  limits: { messages: { limit: 1000, window: 1h } }
admin: { listen: 127.0.0.1:0 }
log: { level: info }
`);
  cleanup.push(() => lb.stop());

  const arrivals = (pattern: RegExp) => seen.filter((s) => pattern.test(s.line)).map((s) => s.at);
  const c = await SmtpDialog.open(lb.port);
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  const plain = Buffer.from('\0alice@example.com\0alice-pw').toString('base64');
  assert.equal((await c.cmd(`AUTH PLAIN ${plain}`)).code, 235);
  assert.equal((await c.cmd('MAIL FROM:<alice@example.com>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<bob@example.net>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  assert.equal((await c.cmd('Subject: rt\r\n\r\nhello\r\n.')).code, 250);
  assert.equal((await c.cmd('QUIT')).code, 221);
  c.close();
  assert.equal(backend.messages.length, 1);

  // The first command of each counter (the session count's keys come again at QUIT and renewal).
  const spread = (names: string[], lists: number[][]) => {
    for (const [i, l] of lists.entries()) assert.ok(l.length > 0, `no ${names[i]} command reached Redis`);
    const at = lists.map((l) => l[0]!);
    return Math.max(...at) - Math.min(...at);
  };
  const atConnect = spread(
    ['connection rate', 'session count'],
    [arrivals(/:rate:\{conn:/), arrivals(/:client:\{[^}]*\}:addr:127\.0\.0\.1 /)],
  );
  assert.ok(atConnect < TOGETHER_MS, `at connect the two counters arrived ${atConnect.toFixed(0)} ms apart`);
  const atMail = spread(
    ['suspension', "user's message count", "client's message count"],
    [arrivals(/:senders:\{suspended\}/), arrivals(/:rate:\{user-messages:/), arrivals(/:rate:\{msg:/)],
  );
  assert.ok(atMail < TOGETHER_MS, `at MAIL the three arrived ${atMail.toFixed(0)} ms apart`);
  assert.ok(
    !lb.logs.some((l) => /Redis|ledger/i.test(String(l.msg)) && Number(l.level) >= 40),
    'no Redis call timed out or failed',
  );
});
