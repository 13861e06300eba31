// The session checks by stage, with the node's real shaping runtime (in-memory limits, the tarpit)
// and a real policy service on port 0 (Postfix's protocol: name=value lines, a blank line): what
// each stage answers, what the policy service is told (from the transaction object), and that a
// session tarpitted midway has its replies held.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort, type PolicyService, startPolicyService } from '@smtp-lb/testkit';
import { Metrics } from '../src/metrics.js';
import { replies } from '../src/replies.js';
import { ClientState } from '../src/shaping/client-state.js';
import { SessionChecks } from '../src/shaping/session-checks.js';
import { ShapingRuntime } from '../src/shaping/shaping-runtime.js';
import type { Client, Transaction } from '../src/transaction.js';
import { senderPolicy, shapingConfig, silent } from './wiring.js';

let policy: PolicyService;
const runtimes: ShapingRuntime[] = [];

before(async () => {
  policy = await startPolicyService();
});
after(async () => {
  await policy.close();
  for (const r of runtimes) await r.close();
});

async function checks(shaping: string, address = '192.0.2.10') {
  const config = shapingConfig(shaping);
  const metrics = new Metrics();
  const shapingRuntime = await ShapingRuntime.create(config, silent, metrics);
  runtimes.push(shapingRuntime);
  const senders = senderPolicy(config, shapingRuntime.limits, metrics);
  const state = new ClientState(address, shapingRuntime.allowed(address));
  const c = new SessionChecks(
    {
      shaping: shapingRuntime,
      metrics,
      listener: config.listeners[0]!,
      recipientMap: () => undefined,
      senders,
    },
    state,
    silent,
  );
  return { c, state };
}

const client: Client = {
  id: 'sid1',
  address: '192.0.2.10',
  port: 40000,
  destination: { address: '127.0.0.1', port: 25 },
  proxied: false,
  helo: 'client.test',
  proto: 'ESMTP',
  secure: false,
  user: undefined,
  userAddresses: undefined,
};

function tx(recipients = 0): Transaction {
  return {
    client,
    id: 'sid1.3',
    mail: { address: 'alice@example.org', args: { SIZE: '1234' } },
    recipients: Array.from({ length: recipients }, (_, i) => ({
      address: `r${i}@example.test`,
      args: {},
      pool: 'p',
    })),
    pool: recipients > 0 ? 'p' : undefined,
    backend: undefined,
    mailAtBackend: recipients > 0,
  };
}

test('atRcpt asks the policy service with the transaction; REJECT is 554 5.7.1 before any backend', async () => {
  const { c } = await checks(`  policy: { address: 127.0.0.1:${policy.port}, timeout: 2s }`);
  policy.requests.length = 0;
  policy.answer = (r) => (r.recipient === 'bad@example.test' ? 'REJECT' : 'DUNNO');
  assert.equal(await c.atRcpt(tx(1), { address: 'good@example.test', args: {} }), undefined);
  const refused = await c.atRcpt(tx(1), { address: 'bad@example.test', args: {} });
  assert.deepEqual(
    refused,
    replies.policyRefused(554, '5.7.1', '<bad@example.test>: Recipient address rejected', 'Access denied'),
  );
  const r = policy.requests[1]!;
  assert.equal(r.protocol_state, 'RCPT');
  assert.equal(r.client_address, '192.0.2.10');
  assert.equal(r.helo_name, 'client.test');
  assert.equal(r.protocol_name, 'ESMTP');
  assert.equal(r.sender, 'alice@example.org');
  assert.equal(r.recipient_count, '1');
  assert.equal(r.instance, 'sid1.3');
  assert.equal(r.size, '1234');
});

test('a policy service that cannot be reached: 451 4.3.5 with onError defer, nothing with accept', async () => {
  const dead = await freePort('127.0.0.1');
  const defer = await checks(`  policy: { address: 127.0.0.1:${dead}, timeout: 500ms, onError: defer }`);
  assert.deepEqual(
    await defer.c.atRcpt(tx(), { address: 'a@example.test', args: {} }),
    replies.policyUnavailable(),
  );
  const accept = await checks(`  policy: { address: 127.0.0.1:${dead}, timeout: 500ms, onError: accept }`);
  assert.equal(await accept.c.atRcpt(tx(), { address: 'a@example.test', args: {} }), undefined);
});

test('atData asks at END-OF-MESSAGE with the size that streamed; without data in `at` it asks nothing', async () => {
  const { c } = await checks(
    `  policy: { address: 127.0.0.1:${policy.port}, timeout: 2s, at: [rcpt, data] }`,
  );
  policy.requests.length = 0;
  policy.answer = (r) => (r.protocol_state === 'END-OF-MESSAGE' ? 'DEFER try later' : 'DUNNO');
  assert.equal(c.holdsFinalDot, true);
  const refused = await c.atData(tx(2), 5000);
  assert.deepEqual(refused, replies.policyRefused(450, '4.7.1', 'Message rejected', 'try later'));
  assert.equal(policy.requests[0]!.size, '5000');
  assert.equal(policy.requests[0]!.recipient_count, '2');
  const rcptOnly = await checks(`  policy: { address: 127.0.0.1:${policy.port}, timeout: 2s }`);
  assert.equal(rcptOnly.c.holdsFinalDot, false);
});

test('atMail: over the message rate is 421 4.7.0 with action reject; an allow-listed client is not counted', async () => {
  const { c } = await checks(
    '  limits: { messageRate: { limit: 1, window: 1m }, action: reject }',
    '192.0.2.20',
  );
  const from = { address: 'a@example.org', args: {} };
  assert.equal(await c.atMail(client, from), undefined);
  assert.deepEqual(await c.atMail(client, from), replies.messageRate());
  const allowed = await checks(
    '  allow: [192.0.2.21/32]\n  limits: { messageRate: { limit: 1, window: 1m }, action: reject }',
    '192.0.2.21',
  );
  for (let i = 0; i < 3; i++) assert.equal(await allowed.c.atMail(client, from), undefined);
});

test('afterRcptReply: at tarpit.rejectedRecipients the session is tarpitted and its replies are held', async () => {
  const { c, state } = await checks('  tarpit: { delay: 300ms, rejectedRecipients: 2 }', '192.0.2.30');
  const refused = { code: 550, enhanced: '5.1.1', lines: ['5.1.1 unknown'] };
  const ok = replies.mailAccepted();
  assert.equal(c.pace(ok), ok, 'not tarpitted: the reply goes at once');
  c.afterRcptReply(tx(), refused);
  c.afterRcptReply(tx(), { code: 250, lines: ['2.1.5 ok'] });
  assert.equal(state.tarpitted, false, 'one refusal is not enough');
  c.afterRcptReply(tx(), refused);
  assert.equal(state.tarpitted, true);
  assert.equal(state.ticket?.reason, 'rejected-recipients');
  const t0 = Date.now();
  assert.equal(await c.pace(ok), ok);
  assert.ok(Date.now() - t0 >= 250, 'held for the tarpit delay');
  state.release();
});
