// PROXY headers in front of the node: a trusted peer's v1 or v2 header makes its address the
// client's (the backend's XCLIENT shows it); a trusted peer without a header, an untrusted peer
// with one, and garbage, truncated or oversized headers are disconnected with a log line, and
// never crash or stall the node (a bounded loop of random bytes, then a normal session).
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import { startShapingNode, waitForLog } from '../e2e/shaping-helpers.js';
import type { TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function v2tcp4(src: string, sport: number): Buffer {
  const b = Buffer.alloc(16 + 12);
  SIG.copy(b, 0);
  b[12] = 0x21;
  b[13] = 0x11;
  b.writeUInt16BE(12, 14);
  Buffer.from(src.split('.').map(Number)).copy(b, 16);
  Buffer.from([127, 0, 0, 1]).copy(b, 20);
  b.writeUInt16BE(sport, 24);
  b.writeUInt16BE(25, 26);
  return b;
}

/** Sends `bytes` right after connecting; resolves with what came back when the node closed. */
function sendAndWaitClose(
  port: number,
  bytes: Buffer,
  from = '127.0.0.1',
  timeoutMs = 5000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`still open after ${timeoutMs} ms; got ${JSON.stringify(got)}`));
    }, timeoutMs);
    s.on('connect', () => s.write(bytes));
    s.on('data', (d) => {
      got += d.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

async function session(lb: TestNode, header: Buffer | string, from = '127.0.0.1'): Promise<SmtpDialog> {
  const c = await SmtpDialog.open(lb.port, '127.0.0.1', from);
  c.write(header);
  return c;
}

describe('PROXY headers into the node', { timeout: 90_000 }, () => {
  let backend: CaptureBackend;
  let lb: TestNode;
  let untrusting: TestNode;
  before(async () => {
    backend = await startCaptureBackend();
    lb = await startShapingNode({
      backend: backend.address,
      listener: '    proxyProtocol: { trusted: [127.0.0.1/32], timeout: 500ms }',
    });
    untrusting = await startShapingNode({
      backend: backend.address,
      listener: '    proxyProtocol: { trusted: [10.0.0.0/8] }',
      shaping: '  greeting: { delay: 300ms }\n',
    });
  });
  after(async () => {
    await lb?.stop();
    await untrusting?.stop();
    await backend?.close();
  });

  test("v1 and v2 from a trusted peer: the header's address is the client everywhere after", async () => {
    for (const [header, addr, port] of [
      ['PROXY TCP4 198.51.100.7 127.0.0.1 40001 25\r\n', '198.51.100.7', 40001],
      [v2tcp4('203.0.113.9', 40002), '203.0.113.9', 40002],
      ['PROXY TCP6 2001:db8::77 ::1 40003 25\r\n', '2001:db8::77', 40003],
    ] as const) {
      const c = await session(lb, header);
      assert.equal((await c.read()).code, 220);
      await c.cmd('EHLO client.test');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
      const seen = backend.sessions.find((s) => s.xclient.ADDR === addr || s.xclient.ADDR === `IPV6:${addr}`);
      assert.ok(
        seen,
        `the backend got XCLIENT ADDR=${addr}: ${JSON.stringify(backend.sessions.map((s) => s.xclient))}`,
      );
      assert.equal(seen.xclient.PORT, String(port));
      const opened = await waitForLog(lb, 'session opened', (l) => l.client === `${addr}:${port}`);
      assert.ok(opened.sid);
      c.close();
    }
  });

  test('a trusted peer that sends no header is disconnected with a log line', async () => {
    const got = await sendAndWaitClose(lb.port, Buffer.from('EHLO client.test\r\n'));
    assert.equal(got, '', 'no greeting, no reply');
    const line = await waitForLog(
      lb,
      'bad PROXY header; disconnected',
      (l) => l.reason === 'no PROXY header',
    );
    assert.equal(line.code, 'PROXY_MALFORMED');
    // Silent: the header timeout ends it.
    const silent = await sendAndWaitClose(lb.port, Buffer.alloc(0));
    assert.equal(silent, '');
    await waitForLog(lb, 'no complete PROXY header from a trusted peer in time; disconnected');
  });

  test('an untrusted peer that sends a header is disconnected with a log line', async () => {
    const got = await sendAndWaitClose(
      untrusting.port,
      Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1 25\r\n'),
    );
    assert.equal(got, '');
    const line = await waitForLog(
      untrusting,
      'PROXY header from a peer not in proxyProtocol.trusted; disconnected',
    );
    assert.match(String(line.client), /^127\.0\.0\.1:/);
    const v2 = await sendAndWaitClose(untrusting.port, v2tcp4('192.0.2.1', 1));
    assert.equal(v2, '');
  });

  test('without a greeting delay: greeted, then disconnected at the header, which never reaches SMTP', async () => {
    const plain = await startShapingNode({
      backend: backend.address,
      listener: '    proxyProtocol: { trusted: [10.0.0.0/8] }',
    });
    try {
      for (const header of [Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1 25\r\n'), v2tcp4('192.0.2.1', 1)]) {
        const c = await SmtpDialog.open(plain.port);
        assert.equal((await c.read()).code, 220);
        c.write(header);
        await c.waitClosed(5000);
        await assert.rejects(c.read(100), /connection closed; unread: ""/, 'no reply to the header');
      }
      const lines = plain.logs.filter(
        (l) => l.msg === 'PROXY header from a peer not in proxyProtocol.trusted; disconnected',
      );
      assert.equal(lines.length, 2);
      // A client whose first command merely starts like a header is served as usual.
      const c = await SmtpDialog.open(plain.port);
      await c.read();
      assert.equal((await c.cmd('PRO')).code, 500);
      assert.equal((await c.cmd('EHLO x.test')).code, 250);
      c.close();
    } finally {
      await plain.stop();
    }
  });

  test('truncated, oversized and garbage headers, then random bytes: closed, logged, node unharmed', async () => {
    const cases: Array<[Buffer, string]> = [
      [
        Buffer.from('PROXY TCP4 198.51.100.7 127.0.0.1 40001'),
        'no complete PROXY header from a trusted peer in time; disconnected',
      ],
      [Buffer.from(`PROXY TCP4 ${'9'.repeat(200)}\r\n`), 'bad PROXY header; disconnected'],
      [
        Buffer.concat([v2tcp4('192.0.2.1', 1).subarray(0, 14), Buffer.from([0xff, 0xff])]),
        'bad PROXY header; disconnected',
      ],
      [
        v2tcp4('192.0.2.1', 1).subarray(0, 20),
        'no complete PROXY header from a trusted peer in time; disconnected',
      ],
      [Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n'), 'bad PROXY header; disconnected'],
    ];
    for (const [bytes, msg] of cases) {
      const before = lb.logs.filter((l) => l.msg === msg).length;
      assert.equal(await sendAndWaitClose(lb.port, bytes), '');
      await waitForLog(lb, msg, () => lb.logs.filter((l) => l.msg === msg).length > before);
    }
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const prefixes = [Buffer.from('PROXY '), SIG, Buffer.alloc(0)];
    const runs: Array<Promise<string>> = [];
    for (let i = 0; i < 150; i++) {
      const body = Buffer.alloc(rnd() % 200);
      for (let j = 0; j < body.length; j++) body[j] = rnd() & 0xff;
      runs.push(sendAndWaitClose(lb.port, Buffer.concat([prefixes[i % 3]!, body]), '127.0.0.1', 10_000));
    }
    const answers = await Promise.all(runs);
    assert.ok(
      answers.every((a) => a === ''),
      'no garbage ever reached the SMTP session',
    );
    // The node still serves a proper session.
    const c = await session(lb, 'PROXY TCP4 198.51.100.8 127.0.0.1 40009 25\r\n');
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO after.test')).code, 250);
    c.close();
  });
});
