// A session keeps its backend connection for the client's next transaction (DESIGN.md "Life of a
// session"). When that backend has meanwhile turned critical in Consul, the next transaction must not
// go to it (invariant 6: the transaction in flight finishes, nothing new starts there): an MTA with
// connection caching (Postfix to its relayhost) would otherwise keep feeding a drained backend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ConsulAgent, startConsul } from '@smtp-lb/testkit';
import { taggedBackend } from '../helpers/backends.js';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { consulConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const cleanup = cleanupAfterAll();

const tagged = (name: string) => taggedBackend(name, cleanup);

test('the next transaction of a session kept on a backend that turned critical goes to another one', {
  timeout: 30_000,
}, async () => {
  const consul: ConsulAgent = await startConsul();
  cleanup.push(() => consul.stop());
  const a = await tagged('A');
  const b = await tagged('B');
  await consul.register({
    id: 'kept-A',
    name: 'kept',
    address: a.host,
    port: a.port,
    weights: { passing: 3, warning: 1 },
  });
  await consul.register({ id: 'kept-B', name: 'kept', address: b.host, port: b.port });
  const lb = await startNode(
    consulConfig({ id: 'kept-e2e', service: 'kept', consul: consul.address, policy: 'weighted-round-robin' }),
  );
  cleanup.push(() => lb.stop());
  const listed = () => lb.node.status().pools[0]!.backends.map((x) => x.id);
  const until = async (ok: () => boolean) => {
    const deadline = Date.now() + 5_000;
    while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(ok(), `node sees ${listed().join(', ')}`);
  };
  await until(() => listed().length === 2);

  const c = await SmtpDialog.open(lb.port);
  cleanup.push(async () => c.close());
  await c.read();
  await c.cmd('EHLO client.test');
  const send = async (n: number) => {
    assert.equal((await c.cmd('MAIL FROM:<sender@client.test>')).code, 250);
    const rcpt = await c.cmd(`RCPT TO:<r${n}@mta.test>`);
    assert.equal(rcpt.code, 250, rcpt.raw);
    assert.equal((await c.cmd('DATA')).code, 354);
    const end = await c.cmd(`Subject: kept ${n}\r\n\r\nhello\r\n.`);
    assert.equal(end.code, 250, end.raw);
    return /taken by (\w+)/.exec(end.raw)?.[1];
  };
  assert.equal(await send(1), 'A');
  await consul.maintenance('kept-A', true);
  await until(() => listed().length === 1);
  assert.equal(await send(2), 'B');
  assert.deepEqual(
    a.messages.map((m) => m.rcptTo),
    [['r1@mta.test']],
  );
  assert.deepEqual(
    b.messages.map((m) => m.rcptTo),
    [['r2@mta.test']],
  );
  await c.cmd('QUIT');
});
