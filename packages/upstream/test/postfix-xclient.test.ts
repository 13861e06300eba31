// Against a real Postfix (testkit's private instance, XCLIENT allowed from 127.0.0.1, relaying to a
// capture backend): the client's identity survives XCLIENT split over two commands, Postfix accepts
// our DATA encoding, and the relayed message shows the real client, not the proxy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type CaptureBackend, type PostfixInstance, startPostfix } from '@smtp-lb/testkit';
import { connectUpstream } from '../src/index.js';
import { xclientCommands } from '../src/xclient.js';
import { backend, body, identity, options } from './helpers/setup.js';

describe('XCLIENT with a real Postfix', { timeout: 60_000 }, () => {
  let sink: CaptureBackend;
  let postfix: PostfixInstance;
  let refusing: PostfixInstance;

  before(async () => {
    sink = await backend();
    // inet_protocols=all: an IPv4-only Postfix answers `501 Bad ADDR syntax` to an IPv6 ADDR.
    [postfix, refusing] = await Promise.all([
      startPostfix({ relayTo: sink.address, mainCf: { inet_protocols: 'all' } }),
      startPostfix({ xclientHosts: '192.0.2.1' }),
    ]);
  });
  after(async () => {
    await Promise.all([postfix?.stop(), refusing?.stop()]);
  });

  it('passes the client identity, split over two commands, and relays the message intact', async () => {
    // Long enough together to need two XCLIENT commands (each value within Postfix's 255).
    const helo = ['a', 'b', 'c', 'd'].map((c) => c.repeat(60)).join('.');
    const who = {
      ...identity,
      address: '2001:db8::7',
      helo,
      name: 'client.example.net',
      login: 'u'.repeat(250),
    };
    const offered = 'NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT'; // Postfix 3.x's EHLO
    assert.equal(xclientCommands(offered, who).length, 2, 'precondition: the identity needs two commands');
    // ADDR and NAME go last: were they first, Postfix would refuse the second command with 550.
    const conn = await connectUpstream(options(postfix, { xclient: 'auto', heloName: 'proxy.test' }), who);
    assert.equal(conn.xclientSent, true);
    const env = await conn.envelope({ address: 'a@x.test', params: {} }, [
      { address: 'b@y.test', params: {} },
    ]);
    assert.equal(env.rcpts[0]!.code, 250);
    const reply = await conn.data(body('Subject: hi\r\n\r\n.dot line\r\n', 'bare\nlf\r\n.'), {
      bareNewlines: 'normalize',
    });
    assert.equal(reply.code, 250);
    assert.match(reply.lines[0]!, /^2\.0\.0 Ok: queued as /);
    await conn.quit();
    const log = await postfix.log();
    assert.match(log, /client=client\.example\.net\[2001:db8::7\]/);
    await postfix.flush();
    const [m] = await sink.waitForMessages(1, 30_000);
    const text = m!.data.toString();
    assert.ok(
      text.startsWith(`Received: from ${helo} (client.example.net [IPv6:2001:db8::7])`),
      text.slice(0, 400),
    );
    assert.match(text, /\r\n\r\n\.dot line\r\nbare\r\nlf\r\n\.\r\n$/);
  });

  it('is not offered XCLIENT by a Postfix that does not trust us, and sends none', async () => {
    const conn = await connectUpstream(options(refusing, { xclient: 'auto' }), identity);
    assert.equal(conn.capabilities.has('XCLIENT'), false);
    assert.equal(conn.xclientSent, false);
    await conn.quit();
  });
});
