// Behind a TCP load balancer: swaks plays the balancer and sends a PROXY v2 header for a client
// address; the node takes that address as the client's and hands it to a real Postfix by XCLIENT,
// so Postfix's log names the real client, never the balancer nor the node. The header's destination
// (what the client dialled: an interceptor's original destination) reaches Postfix as XCLIENT
// DESTADDR/DESTPORT, seen as server_address/server_port by a policy service Postfix asks.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  finalDataReply,
  type PostfixInstance,
  runSwaks,
  startCaptureBackend,
  startPostfix,
} from '@smtp-lb/testkit';
import type { TestNode } from '../helpers/node.js';
import { startShapingNode, waitForLog } from './shaping-helpers.js';

describe('PROXY v2 in, XCLIENT out to Postfix', { timeout: 90_000 }, () => {
  let sink: CaptureBackend;
  let postfix: PostfixInstance;
  let lb: TestNode;
  let policy: Server;
  /** Each policy request Postfix made, as name -> value. */
  const asked: Array<Record<string, string>> = [];
  before(async () => {
    sink = await startCaptureBackend();
    // A Postfix policy service (SMTPD_POLICY_README): name=value lines, a blank line; DUNNO.
    policy = createServer((socket) => {
      let buf = '';
      socket.on('data', (chunk) => {
        buf += chunk.toString('latin1');
        for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
          const attrs: Record<string, string> = {};
          for (const line of buf.slice(0, end).split('\n')) {
            const eq = line.indexOf('=');
            if (eq > 0) attrs[line.slice(0, eq)] = line.slice(eq + 1);
          }
          asked.push(attrs);
          buf = buf.slice(end + 2);
          socket.write('action=DUNNO\n\n');
        }
      });
      socket.on('error', () => socket.destroy());
    });
    await new Promise<void>((r) => policy.listen(0, '127.0.0.1', r));
    const policyPort = (policy.address() as { port: number }).port;
    postfix = await startPostfix({
      relayTo: sink.address,
      mainCf: { smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:${policyPort}, permit` },
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
    policy?.close();
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
    const rcpt = asked.find((a) => a.protocol_state === 'RCPT' && a.client_address === '203.0.113.9');
    assert.ok(rcpt, `Postfix asked its policy service at RCPT: ${JSON.stringify(asked)}`);
    assert.equal(rcpt.server_address, '198.51.100.25');
    assert.equal(rcpt.server_port, '2525');
  });
});
