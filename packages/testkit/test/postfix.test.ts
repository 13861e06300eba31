// Private Postfix instances: accept mail from swaks and log it, relay it to a listener the test
// owns, take XCLIENT from 127.0.0.1 only when authorised, and run side by side with their own logs.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  finalDataReply,
  freePort,
  type PostfixInstance,
  replyTo,
  runCommand,
  runSwaks,
  startPostfix,
  type TestkitError,
} from '../src/index.js';
import { type CaptureListener, rawConnect, startCaptureListener } from './smtp-helpers.js';

function queuedId(text: string | undefined): string {
  const id = /queued as ([0-9A-F]+)/.exec(text ?? '')?.[1];
  assert.ok(id, `no queue id in ${text}`);
  return id;
}

describe('startPostfix', { timeout: 60_000 }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    await Promise.all(cleanups.map((c) => c()));
  });
  const started = async (options?: Parameters<typeof startPostfix>[0]) => {
    const pf = await startPostfix(options);
    cleanups.push(() => pf.stop());
    return pf;
  };
  const listener = async (port?: number) => {
    const l = await startCaptureListener(port);
    cleanups.push(() => l.close());
    return l;
  };

  test('accepts a message from swaks with 250 and logs the session', async () => {
    const pf = await started();
    const r = await runSwaks({
      server: pf.address,
      from: 'sender@example.org',
      to: 'rcpt@example.test',
      helo: 'swaks.client.test',
      body: 'hello',
      timeoutMs: 15_000,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(replyTo(r.transcript, '(connect)')?.text ?? '', new RegExp(`^${pf.hostname} ESMTP`));
    const final = finalDataReply(r.transcript);
    assert.equal(final?.code, 250);
    assert.equal(final?.enhanced, '2.0.0');
    const id = queuedId(final?.text);
    await pf.waitForLog(new RegExp(`${id}: to=<rcpt@example.test>, relay=none.*status=sent`));
    const log = await pf.log();
    assert.match(log, new RegExp(`${id}: client=unknown\\[127\\.0\\.0\\.1\\]`));
    assert.match(log, /disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1/);
    assert.deepEqual(await pf.queueIds(), [id]);
  });

  test('its directories pass `postfix check` unchanged and without warnings', async () => {
    const pf = await started();
    // pid/ gains lock files as services first run; everything else is the layout made at start.
    const tree = async () =>
      (
        await runCommand('find', [
          pf.queueDir,
          pf.configDir,
          '-path',
          `${pf.queueDir}/pid/*`,
          '-prune',
          '-o',
          '-printf',
          '%p %u %g %m\\n',
        ])
      ).stdout;
    const before = await tree();
    const check = await runCommand('postfix', ['-c', pf.configDir, 'check']);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal(await tree(), before, 'postfix check had something to create or fix');
    assert.doesNotMatch(`${check.stderr}${await pf.log()}`, /warning|fatal/);
  });

  test('relays to relayTo: the listener receives the message', async () => {
    const capture = await listener();
    const pf = await started({ relayTo: `127.0.0.1:${capture.port}` });
    const r = await runSwaks({
      server: pf.address,
      from: 'sender@example.org',
      to: ['one@example.test', 'two@example.com'],
      data: 'Subject: relayed\r\n\r\nbody line\r\n',
      timeoutMs: 15_000,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const id = queuedId(finalDataReply(r.transcript)?.text);
    await pf.waitForLog(
      new RegExp(`${id}: to=<two@example.com>, relay=127.0.0.1\\[127.0.0.1\\]:${capture.port}.*status=sent`),
    );
    const got = await waitForMessages(capture, 1);
    assert.equal(got[0]?.from, 'sender@example.org');
    assert.deepEqual([...(got[0]?.to ?? [])].sort(), ['one@example.test', 'two@example.com']);
    assert.match(got[0]?.data ?? '', /^Received: from [^\r]*\r\n/);
    assert.match(got[0]?.data ?? '', /\r\nSubject: relayed\r\n[\s\S]*\r\n\r\nbody line\r\n/);
  });

  test('mail deferred while relayTo is down goes out after flush() once it is up', async () => {
    const port = await freePort();
    const pf = await started({ relayTo: `127.0.0.1:${port}` });
    const r = await runSwaks({
      server: pf.address,
      from: 's@example.org',
      to: 'r@example.test',
      body: 'later',
    });
    const id = queuedId(finalDataReply(r.transcript)?.text);
    await pf.waitForLog(new RegExp(`${id}: to=<r@example.test>.*status=deferred`));
    const capture = await listener(port);
    await pf.flush();
    await pf.waitForLog(new RegExp(`${id}: to=<r@example.test>, relay=127.0.0.1.*status=sent`), 15_000);
    assert.equal((await waitForMessages(capture, 1)).length, 1);
  });

  test('main.cf overrides apply: a recipient rejected by an access rule gets 550 at RCPT', async () => {
    const pf = await started({
      mainCf: {
        smtpd_recipient_restrictions:
          'check_recipient_access inline:{ { nobody@example.test = 550 5.1.1 no such user } }',
      },
    });
    const r = await runSwaks({
      server: pf.address,
      from: 's@example.org',
      to: 'nobody@example.test',
      body: 'x',
    });
    assert.equal(r.code, 24, 'swaks reports the failure at RCPT');
    const rcpt = replyTo(r.transcript, 'RCPT');
    assert.equal(rcpt?.code, 550);
    assert.equal(rcpt?.enhanced, '5.1.1');
    assert.match(rcpt?.text ?? '', /no such user/);
  });

  test('XCLIENT from 127.0.0.1 is accepted and changes the logged client', async () => {
    const pf = await started();
    const c = await rawConnect(pf.host, pf.port);
    try {
      assert.equal(c.greeting.code, 220);
      const ehlo = await c.command('EHLO proxy.test');
      assert.ok(
        ehlo.lines.some((l) => /^250[- ]XCLIENT /.test(l)),
        ehlo.lines.join('\n'),
      );
      assert.equal((await c.command('XCLIENT ADDR=192.0.2.7')).code, 220);
      assert.equal((await c.command('EHLO client.test')).code, 250);
      assert.equal((await c.command('MAIL FROM:<s@example.org>')).code, 250);
      assert.equal((await c.command('RCPT TO:<r@example.test>')).code, 250);
      assert.equal((await c.command('DATA')).code, 354);
      const done = await c.command('Subject: via xclient\r\n\r\nhi\r\n.');
      assert.equal(done.code, 250);
      const id = queuedId(done.lines.join('\n'));
      await pf.waitForLog(new RegExp(`${id}: client=unknown\\[192\\.0\\.2\\.7\\]`));
      await c.command('QUIT');
    } finally {
      c.close();
    }
  });

  test('XCLIENT from a host outside xclientHosts is refused', async () => {
    const pf = await started({ xclientHosts: '192.0.2.1' });
    const c = await rawConnect(pf.host, pf.port);
    try {
      const ehlo = await c.command('EHLO proxy.test');
      assert.ok(!ehlo.lines.some((l) => l.includes('XCLIENT')), 'XCLIENT is not offered');
      const refused = await c.command('XCLIENT ADDR=192.0.2.7');
      assert.equal(refused.code, 550);
    } finally {
      c.close();
    }
  });

  test('two instances run at once, each with its own port, directories and log', async () => {
    const [a, b] = (await Promise.all([started(), started()])) as [PostfixInstance, PostfixInstance];
    assert.notEqual(a.port, b.port);
    assert.notEqual(a.dir, b.dir);
    const send = async (pf: PostfixInstance) => {
      const r = await runSwaks({
        server: pf.address,
        from: 's@example.org',
        to: 'r@example.test',
        body: pf.hostname,
      });
      return queuedId(finalDataReply(r.transcript)?.text);
    };
    const [idA, idB] = await Promise.all([send(a), send(b)]);
    await a.waitForLog(new RegExp(`${idA}: to=<r@example.test>.*status=sent`));
    await b.waitForLog(new RegExp(`${idB}: to=<r@example.test>.*status=sent`));
    assert.deepEqual(await a.queueIds(), [idA]);
    assert.deepEqual(await b.queueIds(), [idB]);
    assert.doesNotMatch(await a.log(), new RegExp(b.hostname));
  });

  test('a broken configuration fails the start with what Postfix said', async () => {
    await assert.rejects(
      startPostfix({ mainCf: { queue_directory: '/nonexistent/smtp-lb-queue' } }),
      (err: TestkitError) => {
        assert.equal(err.code, 'TESTKIT_EXITED');
        assert.match(err.message, /nonexistent\/smtp-lb-queue/);
        return true;
      },
    );
  });

  test('stop() frees the port', async () => {
    const pf = await startPostfix();
    await pf.stop();
    const r = await runSwaks({
      server: pf.address,
      from: 's@example.org',
      to: 'r@example.test',
      timeoutMs: 5000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.errors.join('\n'), /Connection refused/);
  });
});

async function waitForMessages(capture: CaptureListener, count: number) {
  const deadline = Date.now() + 10_000;
  while (capture.messages.length < count) {
    assert.ok(Date.now() < deadline, `only ${capture.messages.length} of ${count} messages arrived`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return capture.messages;
}
