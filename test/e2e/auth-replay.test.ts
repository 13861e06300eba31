// verify: backend when the session's mail goes to another backend than the one that checked the
// password: Postfix A's SASL (Dovecot) says yes at AUTH, the recipient routes to pool B, whose
// Postfix does not offer XCLIENT to the node, so the AUTH is replayed on the new connection and
// Postfix B logs the SASL user. swaks as the client.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  type PostfixInstance,
  runSwaks,
  startCaptureBackend,
  startPostfix,
} from '@smtp-lb/testkit';
import { startNode, type TestNode } from '../helpers/node.js';

describe('verify: backend, AUTH replayed on a second backend without XCLIENT', { timeout: 120_000 }, () => {
  let sink: CaptureBackend;
  let a: PostfixInstance;
  let b: PostfixInstance;
  let lb: TestNode;
  const users = { 'alice@example.com': 'Alice-Pw' };

  before(async () => {
    sink = await startCaptureBackend();
    [a, b] = await Promise.all([
      startPostfix({ relayTo: sink.address, saslUsers: users }),
      // No XCLIENT for the node here: the identity can only come by AUTH.
      startPostfix({ relayTo: sink.address, saslUsers: users, xclientHosts: '192.0.2.1' }),
    ]);
    lb = await startNode(`
node: { id: replay-node }
listeners:
  - name: submission
    listen: 127.0.0.1:0
    hostname: submit.test
    role: submission
    pool: a
    auth: { verify: backend, allowPlaintext: true }
pools:
  a: { static: [{ address: ${a.address} }], tls: none }
  b: { static: [{ address: ${b.address} }], tls: none }
routes:
  - { recipientDomain: b.example, pool: b }
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`);
  });
  after(async () => {
    await lb?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
    await sink?.close();
  });

  test("a recipient of pool B: the AUTH checked at A's Postfix is replayed at B's, which logs the user", async () => {
    const res = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'alice@example.com',
      to: 'two@b.example',
      extraArgs: ['--auth', 'PLAIN', '--auth-user', 'alice@example.com', '--auth-password', 'Alice-Pw'],
    });
    assert.match(res.stdout, /235 2\.7\.0 Authentication successful/);
    const id = /250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)/.exec(res.stdout)?.[1];
    assert.ok(id, res.stdout);
    const [line] = await b.waitForLog(new RegExp(`${id}: client=[^\\n]*`));
    assert.match(line, /sasl_method=PLAIN, sasl_username=alice@example\.com/);
    // A checked the password (Dovecot said yes through it) but got no message.
    assert.ok(lb.logs.some((l) => l.msg === 'authenticated' && l.verify === 'backend'));
    assert.equal((await a.queueIds()).length, 0);
    assert.match(await a.log(), /connect from unknown\[127\.0\.0\.1\]/);
  });
});
