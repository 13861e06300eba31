// The wire recorder is the witness of the byte-level tests, so it is tested on its own here with a raw
// TCP client: what it replies, what it records, where DATA ends and how each kill point behaves.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { selfSignedCert, startWireBackend, type WireBackend, type WireBackendOptions } from '../src/index.js';

/** A raw SMTP dialogue: write bytes, read whole replies (multi-line aware). */
class Dialog {
  private buf = '';
  private waiters: Array<() => void> = [];
  ended = false;
  readonly closed: Promise<void>;

  constructor(public socket: net.Socket) {
    this.attach(socket);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
  }

  static async open(backend: WireBackend): Promise<Dialog> {
    const socket = net.connect(backend.port, backend.host);
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new Dialog(socket);
  }

  private attach(s: net.Socket): void {
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    s.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The next complete reply, lines joined with CRLF; rejects if the connection ends first. */
  async reply(): Promise<string> {
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\r\n)*\d{3}(?: [^\n]*)?\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0].slice(0, -2);
      }
      if (this.ended)
        throw new Error(`closed while waiting for a reply; buffered: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async cmd(line: string): Promise<string> {
    this.send(`${line}\r\n`);
    return this.reply();
  }

  async starttls(): Promise<void> {
    const secure = tls.connect({ socket: this.socket, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.socket.removeAllListeners('data');
    this.socket = secure;
    this.attach(secure);
  }
}

const backends: WireBackend[] = [];
async function backend(opts?: WireBackendOptions): Promise<WireBackend> {
  const b = await startWireBackend(opts);
  backends.push(b);
  return b;
}
after(async () => {
  await Promise.all(backends.map((b) => b.close()));
});

async function envelope(d: Dialog): Promise<void> {
  assert.match(await d.reply(), /^220 /);
  assert.match(await d.cmd('EHLO client.test'), /^250-capture\.test/);
  assert.equal(await d.cmd('MAIL FROM:<a@x.test> BODY=8BITMIME'), '250 2.1.0 Ok');
  assert.equal(await d.cmd('RCPT TO:<b@y.test>'), '250 2.1.5 Ok');
}

describe('wire backend', { timeout: 20_000 }, () => {
  it('speaks SMTP with the default replies and records the message un-stuffed', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    assert.equal(await d.reply(), '220 capture.test ESMTP');
    assert.equal(
      await d.cmd('EHLO client.test'),
      [
        '250-capture.test',
        '250-PIPELINING',
        '250-8BITMIME',
        '250-SMTPUTF8',
        '250-SIZE 104857600',
        '250-ENHANCEDSTATUSCODES',
        '250 XCLIENT ADDR PORT PROTO HELO NAME LOGIN DESTADDR DESTPORT',
      ].join('\r\n'),
    );
    assert.equal(await d.cmd('MAIL FROM:<a@x.test> BODY=8BITMIME'), '250 2.1.0 Ok');
    assert.equal(await d.cmd('RCPT TO:<b@y.test>'), '250 2.1.5 Ok');
    assert.equal(await d.cmd('RCPT TO:<c@y.test>'), '250 2.1.5 Ok');
    assert.match(await d.cmd('DATA'), /^354 /);
    const raw = 'Subject: t\r\n\r\n..\r\n...x\r\n.y\r\nz.\r\n';
    d.send(`${raw}.\r\n`);
    assert.equal(await d.reply(), '250 2.0.0 Ok: queued as 1');
    assert.equal(await d.cmd('QUIT'), '221 2.0.0 Bye');
    await d.closed;
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.mailFrom, 'a@x.test');
    assert.equal(m!.mailParams, 'BODY=8BITMIME');
    assert.deepEqual(m!.rcptTo, ['b@y.test', 'c@y.test']);
    assert.equal(m!.raw.toString(), raw);
    assert.equal(m!.data.toString(), 'Subject: t\r\n\r\n.\r\n..x\r\ny\r\nz.\r\n');
    assert.equal(m!.size, m!.data.length);
    assert.equal(m!.earlyData, false);
    const s = b.sessions[0]!;
    assert.deepEqual(s.lines, [
      'EHLO client.test',
      'MAIL FROM:<a@x.test> BODY=8BITMIME',
      'RCPT TO:<b@y.test>',
      'RCPT TO:<c@y.test>',
      'DATA',
      'QUIT',
    ]);
    assert.deepEqual(s.ehlo, ['client.test']);
    assert.equal(s.closedBy, 'server');
    assert.equal(
      s.bytes().toString(),
      `EHLO client.test\r\n${s.lines.slice(1, 5).join('\r\n')}\r\n${raw}.\r\nQUIT\r\n`,
    );
  });

  it('ends DATA only at CRLF.CRLF, also when every byte arrives in its own read', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    d.socket.setNoDelay(true);
    await envelope(d);
    assert.match(await d.cmd('DATA'), /^354 /);
    // None of these may end the message: bare-LF dot lines, a dot line ended by bare CR, "\r\n.\n".
    const raw = '.\n\n.\n\r.\r\r\n.x\r\n.\r \r\n\r\n..\r\n';
    for (const ch of `${raw}.\r\n`) {
      d.send(ch);
      await new Promise((r) => setImmediate(r));
    }
    assert.match(await d.reply(), /^250 2\.0\.0 Ok/);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.raw.toString(), raw);
    assert.equal(m!.data.toString(), '\n\n.\n\r.\r\r\nx\r\n\r \r\n\r\n.\r\n');
    assert.ok(b.sessions[0]!.raw.length > 10, 'the bytes really arrived in separate reads');
  });

  it('records an empty message and handles commands pipelined behind the final dot', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    await envelope(d);
    d.send('DATA\r\n.\r\nRSET\r\nNOOP\r\n');
    assert.match(await d.reply(), /^354 /);
    assert.match(await d.reply(), /^250 2\.0\.0 Ok: queued/);
    assert.equal(await d.reply(), '250 2.0.0 Ok');
    assert.equal(await d.reply(), '250 2.0.0 Ok');
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.raw.length, 0);
    assert.equal(m!.data.length, 0);
    assert.equal(m!.earlyData, true, 'the dot arrived before the 354 was sent');
  });

  it('enforces the command sequence and answers unknown commands with 502', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    await d.reply();
    assert.match(await d.cmd('MAIL FROM:<a@x.test>'), /^503 /);
    assert.match(await d.cmd('HELO client.test'), /^250 capture\.test$/);
    assert.match(await d.cmd('RCPT TO:<b@y.test>'), /^503 /);
    assert.match(await d.cmd('DATA'), /^503 /);
    assert.match(await d.cmd('MAIL FROM:<>'), /^250 /);
    assert.match(await d.cmd('MAIL FROM:<>'), /^503 .*nested/);
    assert.match(await d.cmd('DATA'), /^554 /);
    assert.match(await d.cmd('WHAT now'), /^502 /);
    assert.match(await d.cmd('STARTTLS'), /^502 /, 'not offered without a certificate');
    assert.deepEqual(b.sessions[0]!.lines.slice(-2), ['WHAT now', 'STARTTLS']);
  });

  it('records bare-LF command lines with their LF and bytes never terminated', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    await d.reply();
    d.send('EHLO a\nNOOP\r\n');
    assert.match(await d.reply(), /^250-/);
    assert.match(await d.reply(), /^250 /);
    d.send('NOO');
    await new Promise((r) => setTimeout(r, 20));
    d.socket.end();
    await d.closed;
    await waitFor(() => b.current === 0);
    const s = b.sessions[0]!;
    assert.deepEqual(s.lines, ['EHLO a\n', 'NOOP']);
    assert.equal(s.trailing?.toString(), 'NOO');
    assert.equal(s.closedBy, 'client');
  });

  it('answers pipelined commands in order and says which arrived before any reply', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    await d.reply();
    await d.cmd('EHLO c');
    d.send('MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n');
    assert.deepEqual(
      [await d.reply(), await d.reply(), await d.reply()],
      ['250 2.1.0 Ok', '250 2.1.5 Ok', '250 2.1.5 Ok'],
    );
    assert.equal(await d.cmd('RSET'), '250 2.0.0 Ok');
    assert.deepEqual(b.sessions[0]!.repliesBefore, [1, 2, 2, 2, 5]);
  });

  it('lets a test override replies, multi-line included, and the reply after the dot', async () => {
    const b = await backend({
      greeting: '220-first\r\n220 second',
      reply: ({ verb, arg }) => {
        if (verb === 'RCPT' && arg.includes('bad')) return '550-5.1.1 no such user\r\n550 5.1.1 really';
        if (verb === 'MAIL' && arg.includes('temp')) return '451 4.3.0 try later';
        return undefined;
      },
      dataReply: (m) => `554 5.7.1 rejected ${m.rcptTo.join(',')}`,
    });
    const d = await Dialog.open(b);
    assert.equal(await d.reply(), '220-first\r\n220 second');
    await d.cmd('EHLO c');
    assert.equal(await d.cmd('MAIL FROM:<temp@x.test>'), '451 4.3.0 try later');
    assert.match(await d.cmd('RCPT TO:<b@y.test>'), /^503 /, 'a refused MAIL starts no transaction');
    assert.match(await d.cmd('MAIL FROM:<a@x.test>'), /^250 /);
    assert.equal(await d.cmd('RCPT TO:<bad@y.test>'), '550-5.1.1 no such user\r\n550 5.1.1 really');
    assert.match(await d.cmd('RCPT TO:<ok@y.test>'), /^250 /);
    assert.match(await d.cmd('DATA'), /^354 /);
    d.send('hi\r\n.\r\n');
    assert.equal(await d.reply(), '554 5.7.1 rejected ok@y.test');
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.reply, '554 5.7.1 rejected ok@y.test');
  });

  it('a null override sends no reply at all, like a hung backend', async () => {
    const b = await backend({
      reply: ({ verb }) => (verb === 'NOOP' ? null : undefined),
      dataReply: () => null,
    });
    const d = await Dialog.open(b);
    await envelope(d);
    d.send('NOOP\r\nDATA\r\n');
    assert.match(await d.reply(), /^354 /, 'the NOOP got nothing, the DATA its 354');
    d.send('x\r\n.\r\nRSET\r\n');
    assert.equal(await d.reply(), '250 2.0.0 Ok', 'only the RSET was answered');
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.reply, undefined);
  });

  it('decodes and merges XCLIENT attributes, answers 220 and requires EHLO again', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    await d.reply();
    await d.cmd('EHLO c');
    assert.equal(await d.cmd('XCLIENT ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE]'), '220 capture.test ESMTP');
    assert.match(await d.cmd('MAIL FROM:<a@x.test>'), /^503 /);
    assert.match(await d.cmd('XCLIENT HELO=a+20b+2Bc LOGIN=j+C3+A9'), /^220 /);
    assert.match(await d.cmd('XCLIENT BOGUS=1'), /^501 /);
    assert.match(await d.cmd('XCLIENT ADDR=1+2'), /^501 /);
    assert.deepEqual(b.sessions[0]!.xclient, {
      ADDR: 'IPV6:2001:db8::1',
      NAME: '[UNAVAILABLE]',
      HELO: 'a b+c',
      LOGIN: 'jé',
    });
    const noX = await backend({ capabilities: ['PIPELINING'] });
    const d2 = await Dialog.open(noX);
    await d2.reply();
    await d2.cmd('EHLO c');
    assert.match(await d2.cmd('XCLIENT ADDR=1.2.3.4'), /^502 /);
  });

  it('reads a PROXY v1 or v2 header before greeting and records its bytes', async () => {
    const b = await backend({ expectProxyHeader: true });
    const v1 = 'PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\n';
    const d = await Dialog.open(b);
    d.send(v1.slice(0, 10));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(d.ended, false);
    d.send(`${v1.slice(10)}EHLO c\r\n`);
    assert.match(await d.reply(), /^220 /);
    assert.match(await d.reply(), /^250-/);
    const v2 = Buffer.concat([
      Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1'),
      Buffer.from([0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 0x00, 0x19]),
    ]);
    const d2 = await Dialog.open(b);
    d2.send(v2);
    assert.match(await d2.reply(), /^220 /);
    assert.equal(b.sessions[0]!.proxyHeader?.toString(), v1);
    assert.deepEqual(b.sessions[1]!.proxyHeader, v2);
    const d3 = await Dialog.open(b);
    d3.send('EHLO no-header\r\n');
    await d3.closed;
    assert.equal(b.sessions[2]!.proxyHeader?.toString(), 'EHLO no-header\r\n');
  });

  it('offers STARTTLS, discards what was pipelined behind it and records the session as secure', async () => {
    const cert = await selfSignedCert();
    const b = await backend({ tls: cert });
    const d = await Dialog.open(b);
    await d.reply();
    assert.match(await d.cmd('EHLO c'), /250 STARTTLS$/);
    d.send('STARTTLS\r\nMAIL FROM:<smuggled@x.test>\r\n');
    assert.equal(await d.reply(), '220 2.0.0 Ready to start TLS');
    await d.starttls();
    const ehlo = await d.cmd('EHLO c');
    assert.doesNotMatch(ehlo, /STARTTLS/);
    assert.match(await d.cmd('RCPT TO:<b@y.test>'), /^503 /, 'the smuggled MAIL was not executed');
    await d.cmd('MAIL FROM:<a@x.test>');
    await d.cmd('RCPT TO:<b@y.test>');
    await d.cmd('DATA');
    d.send('secret\r\n.\r\n');
    assert.match(await d.reply(), /^250 /);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.data.toString(), 'secret\r\n');
    const s = b.sessions[0]!;
    assert.equal(s.tls, true);
    assert.deepEqual(s.ehlo, ['c', 'c']);
    assert.ok(!s.lines.includes('MAIL FROM:<smuggled@x.test>'));
  });

  it('kill before-greeting closes without a byte', async () => {
    const b = await backend({ kill: 'before-greeting' });
    const d = await Dialog.open(b);
    await d.closed;
    await assert.rejects(d.reply(), /closed while waiting/);
  });

  it('kill after-rcpt answers the first RCPT, then closes', async () => {
    const b = await backend({ kill: 'after-rcpt' });
    const d = await Dialog.open(b);
    await envelope(d);
    await d.closed;
    assert.equal(b.sessions[0]!.closedBy, 'server');
  });

  it('kill mid-data closes on the first content byte and records no message', async () => {
    const b = await backend({ kill: 'mid-data' });
    const d = await Dialog.open(b);
    await envelope(d);
    assert.match(await d.cmd('DATA'), /^354 /);
    d.send('x');
    await d.closed;
    assert.equal(b.messages.length, 0);
  });

  it('kill after-dot records the message but never replies to it', async () => {
    const b = await backend({ kill: 'after-dot' });
    const d = await Dialog.open(b);
    await envelope(d);
    await d.cmd('DATA');
    d.send('body\r\n.\r\n');
    await d.closed;
    await assert.rejects(d.reply(), /closed/);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.reply, undefined);
    assert.equal(m!.data.toString(), 'body\r\n');
  });

  it('delays the greeting, answers early talkers afterwards and counts concurrency', async () => {
    const b = await backend({ greetingDelayMs: 100 });
    const ds = await Promise.all([Dialog.open(b), Dialog.open(b), Dialog.open(b)]);
    ds[0]!.send('NOOP\r\n');
    assert.match(await ds[0]!.reply(), /^220 /);
    assert.match(await ds[0]!.reply(), /^250 /);
    assert.equal(b.sessions[0]!.repliesBefore[0], 0);
    assert.equal(b.maxConcurrent, 3);
    for (const d of ds) d.socket.destroy();
    await waitFor(() => b.current === 0);
    assert.equal(b.maxConcurrent, 3);
  });

  it('with keepData false keeps sizes and hashes but not the bytes', async () => {
    const b = await backend({ keepData: false });
    const d = await Dialog.open(b);
    await envelope(d);
    await d.cmd('DATA');
    const line = `${'.'.repeat(100)}\r\n`;
    for (let i = 0; i < 100; i++) d.send(line);
    d.send('.\r\n');
    assert.match(await d.reply(), /^250 /);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.raw.length, 0);
    assert.equal(m!.rawSize, line.length * 100);
    assert.equal(m!.size, (line.length - 1) * 100);
    const { createHash } = await import('node:crypto');
    assert.equal(
      m!.sha256,
      createHash('sha256')
        .update(`${'.'.repeat(99)}\r\n`.repeat(100))
        .digest('hex'),
    );
  });

  it('waitForMessages rejects when the messages do not come', async () => {
    const b = await backend();
    await assert.rejects(b.waitForMessages(1, 50), /0 of 1 messages/);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
