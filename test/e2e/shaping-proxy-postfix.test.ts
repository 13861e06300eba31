// Behind a TCP load balancer: swaks plays the balancer and sends a PROXY v2 header for a client
// address; the node takes that address as the client's and hands it to a real Postfix by XCLIENT,
// so Postfix's log names the real client, never the balancer nor the node. The header's destination
// (what the client dialled: an interceptor's original destination) reaches Postfix as XCLIENT
// DESTADDR/DESTPORT, seen as server_address/server_port by a policy service Postfix asks.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  finalDataReply,
  type PolicyService,
  type PostfixInstance,
  runSwaks,
  startCaptureBackend,
  startPolicyService,
  startPostfix,
} from '@smtp-lb/testkit';
import type { TestNode } from '../helpers/node.js';
import { startShapingNode, waitForLog } from './shaping-helpers.js';

describe('PROXY v2 in, XCLIENT out to Postfix', { timeout: 90_000 }, () => {
  let sink: CaptureBackend;
  let postfix: PostfixInstance;
  let lb: TestNode;
  let policy: PolicyService;
  before(async () => {
    sink = await startCaptureBackend();
    policy = await startPolicyService();
    postfix = await startPostfix({
      relayTo: sink.address,
      mainCf: { smtpd_recipient_restrictions: `check_policy_service inet:${policy.address}, permit` },
    });
    lb = await startShapingNode({
      backend: postfix.address,
      listener: '    proxyProtocol: { trusted: [127.0.0.2/32] }',
    });
  });
  after(async () => {
    await lb?.stop();
    await postfix?.stop();
    await sink?.close();
    await policy?.close();
  });

  test("Postfix logs the address from the balancer's PROXY v2 header", async () => {
    const res = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'alice@example.org',
      to: 'bob@example.test',
      extraArgs: [
        '--local-interface',
        '127.0.0.2',
        '--proxy-version',
        '2',
        '--proxy-family',
        'AF_INET',
        '--proxy-command',
        'PROXY',
        '--proxy-source',
        '203.0.113.9',
        '--proxy-source-port',
        '40123',
        '--proxy-dest',
        '198.51.100.25',
        '--proxy-dest-port',
        '2525',
        '--helo',
        'client.example.org',
      ],
      timeoutMs: 30_000,
    });
    const final = finalDataReply(res.transcript);
    assert.equal(final?.code, 250, `${res.stdout}\n${res.errors.join('\n')}`);
    const queueId = /queued as ([0-9A-Za-z]+)/.exec(final!.text)?.[1];
    assert.ok(queueId, final!.text);
    const [line] = await postfix.waitForLog(new RegExp(`${queueId}: client=[^\\n]*`), 10_000);
    assert.match(line, /client=unknown\[203\.0\.113\.9\]/);
    assert.doesNotMatch(line, /127\.0\.0\.[12]\]/);
    const opened = await waitForLog(lb, 'session opened', (l) => l.client === '203.0.113.9:40123');
    assert.ok(opened);
    assert.ok(lb.logs.some((l) => l.msg === 'PROXY header read' && l.via === '127.0.0.2'));
    // The original destination, not the node's own address, is what Postfix was told.
    const rcpt = policy.requests.find(
      (a) => a.protocol_state === 'RCPT' && a.client_address === '203.0.113.9',
    );
    assert.ok(rcpt, `Postfix asked its policy service at RCPT: ${JSON.stringify(policy.requests)}`);
    assert.equal(rcpt.server_address, '198.51.100.25');
    assert.equal(rcpt.server_port, '2525');
  });
});
