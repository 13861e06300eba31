// The capture backend is smtp-server with the tests' faults in its hooks and a recorder on its socket,
// so it is tested on its own here with a raw TCP client: what smtp-server answers, what is recorded,
// how scripted refusals, hangs and each kill point show on the wire.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import {
  type CaptureBackend,
  type CaptureBackendOptions,
  selfSignedCert,
  smtpServerVersion,
  startCaptureBackend,
} from '../src/index.js';

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

  static async open(backend: { host: string; port: number }): Promise<Dialog> {
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

const backends: CaptureBackend[] = [];
async function backend(opts?: CaptureBackendOptions): Promise<CaptureBackend> {
  const b = await startCaptureBackend(opts);
  backends.push(b);
  return b;
}
after(async () => {
  await Promise.all(backends.map((b) => b.close()));
});

async function envelope(d: Dialog): Promise<void> {
  assert.equal(await d.reply(), '220 capture.test ESMTP');
  assert.match(await d.cmd('EHLO client.test'), /^250-capture\.test\r\n/);
  assert.equal(await d.cmd('MAIL FROM:<a@x.test> BODY=8BITMIME'), '250 2.1.0 Accepted');
  assert.equal(await d.cmd('RCPT TO:<b@y.test>'), '250 2.1.5 Accepted');
}

/** Nothing more arrives on `d` for `ms` (a hung backend). */
async function silent(d: Dialog, ms: number): Promise<void> {
  const r = await Promise.race([
    d.reply(),
    new Promise((resolve) => setTimeout(() => resolve('silence'), ms)),
  ]);
  assert.equal(r, 'silence');
}

describe('capture backend (smtp-server)', { timeout: 30_000 }, () => {
  it('is the smtp-server of the lock file', () => {
    const lock = JSON.parse(readFileSync(new URL('../../../../package-lock.json', import.meta.url), 'utf8'));
    assert.equal(smtpServerVersion, lock.packages['node_modules/smtp-server'].version);
  });

  it('answers as smtp-server does and records the session and the message as smtp-server read them', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    const port = d.socket.localPort;
    await envelope(d);
    assert.equal(await d.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
    const content = 'Subject: t\r\n\r\n..stuffed\r\n8bit \xe9\r\n';
    assert.equal(await d.cmd(`${content}.`), '250 2.6.0 Ok: queued as 1');
    assert.equal(await d.cmd('QUIT'), '221 2.0.0 Bye');
    await d.closed;
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.mailFrom, 'a@x.test');
    assert.equal(m!.mailParams, 'BODY=8BITMIME');
    assert.deepEqual(m!.rcptTo, ['b@y.test']);
    const unstuffed = Buffer.from(content.replace('..stuffed', '.stuffed'));
    assert.deepEqual(m!.data, unstuffed, 'one dot of a stuffed line removed by its parser');
    assert.equal(m!.size, unstuffed.length);
    assert.equal(m!.sha256, createHash('sha256').update(unstuffed).digest('hex'));
    assert.equal(m!.reply, '250 2.6.0 Ok: queued as 1');
    assert.deepEqual(m!.client, { address: '127.0.0.1', port, helo: 'client.test' });
    const s = b.sessions[0]!;
    assert.deepEqual(s.lines, [
      'EHLO client.test',
      'MAIL FROM:<a@x.test> BODY=8BITMIME',
      'RCPT TO:<b@y.test>',
      'DATA',
      'QUIT',
    ]);
    assert.deepEqual(s.ehlo, ['client.test']);
    assert.match(
      s.bytes().toString(),
      /^EHLO client\.test\r\nMAIL FROM:.*\.\.stuffed\r\n.*\r\n\.\r\nQUIT\r\n$/s,
    );
    assert.equal(s.replies[0], '220 capture.test ESMTP\r\n');
    assert.equal(s.replies.at(-1), '221 2.0.0 Bye\r\n');
    assert.equal(s.closedBy, 'server');
    assert.equal(b.current, 0);
  });

  it('its EHLO: PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, SIZE, XCLIENT; hide and size change it', async () => {
    const b = await backend();
    const d = await Dialog.open(b);
    await d.reply();
    assert.equal(
      await d.cmd('EHLO c.test'),
      [
        '250-capture.test',
        '250-PIPELINING',
        '250-8BITMIME',
        '250-SMTPUTF8',
        '250-ENHANCEDSTATUSCODES',
        '250-SIZE 104857600',
        '250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN',
      ].join('\r\n'),
    );
    const lean = await backend({ hide: ['8BITMIME', 'SMTPUTF8', 'XCLIENT'], size: 1000 });
    const e = await Dialog.open(lean);
    await e.reply();
    assert.equal(
      await e.cmd('EHLO c.test'),
      ['250-capture.test', '250-PIPELINING', '250-ENHANCEDSTATUSCODES', '250 SIZE 1000'].join('\r\n'),
    );
    assert.match(await e.cmd('MAIL FROM:<a@x.test> SIZE=2000'), /^552 /);
    assert.equal(await e.cmd('MAIL FROM:<a@x.test>'), '250 2.1.0 Accepted');
    await e.cmd('RCPT TO:<b@y.test>');
    await e.cmd('DATA');
    assert.match(
      await e.cmd(`${'x'.repeat(1500)}\r\n.`),
      /^552 5\.3\.4 /,
      'over SIZE: refused after the dot',
    );
    assert.equal(lean.messages.length, 1, 'recorded all the same: it reached onData');
  });

  it("scripted refusals get smtp-server's enhanced codes; a hang is a callback never called", async () => {
    const b = await backend({
      reply: ({ verb, arg }) => {
        if (verb === 'MAIL' && arg.includes('temp')) return '451 4.7.1 try later';
        if (verb === 'RCPT' && arg.includes('bad')) return '550 no such user';
        if (verb === 'RCPT' && arg.includes('slow')) return null;
        if (verb === 'RCPT' && arg.includes('fine')) return '250 2.1.5 fine';
        return undefined;
      },
      dataReply: (m) =>
        m.data.includes('spam') ? '554 5.7.1 rejected' : m.data.includes('hang') ? null : undefined,
    });
    const d = await Dialog.open(b);
    await d.reply();
    await d.cmd('EHLO c');
    assert.equal(await d.cmd('MAIL FROM:<temp@x.test>'), '451 4.3.0 try later');
    assert.equal(
      await d.cmd('MAIL FROM:<a@x.test>'),
      '250 2.1.0 Accepted',
      'a refused MAIL starts no transaction',
    );
    assert.equal(await d.cmd('RCPT TO:<bad@y.test>'), '550 5.1.1 no such user');
    assert.match(
      await d.cmd('RCPT TO:<fine@y.test>'),
      /^451 .*not one 4xx\/5xx line/,
      'a test error, said in the reply',
    );
    assert.equal(await d.cmd('RCPT TO:<b@y.test>'), '250 2.1.5 Accepted');
    await d.cmd('DATA');
    assert.equal(await d.cmd('spam\r\n.'), '554 5.6.0 rejected');
    await d.cmd('MAIL FROM:<a@x.test>');
    await d.cmd('RCPT TO:<b@y.test>');
    await d.cmd('DATA');
    d.send('hang\r\n.\r\n');
    await silent(d, 300);
    assert.equal(b.messages.length, 2);
    assert.equal(b.messages[1]!.reply, undefined);
    const e = await Dialog.open(b);
    await e.reply();
    await e.cmd('EHLO c');
    await e.cmd('MAIL FROM:<a@x.test>');
    e.send('RCPT TO:<slow@y.test>\r\n');
    await silent(e, 300);
  });

  it('takes XCLIENT and a PROXY v1 header and records the client they name', async () => {
    const b = await backend({ expectProxyHeader: true });
    const socket = net.connect(b.port, b.host);
    const d = new Dialog(socket);
    const header = 'PROXY TCP4 192.0.2.7 198.51.100.1 41000 25\r\n';
    socket.write(header);
    await d.reply();
    assert.equal(b.sessions[0]!.proxyHeader?.toString(), header);
    assert.deepEqual(b.sessions[0]!.client, { address: '192.0.2.7', port: 41000 });
    await d.cmd('EHLO proxy.test');
    assert.equal(
      await d.cmd('XCLIENT ADDR=192.0.2.9 PORT=555 HELO=c.test NAME=[UNAVAILABLE]'),
      '220 capture.test ESMTP',
    );
    assert.match(await d.cmd('MAIL FROM:<a@x.test>'), /^503 /, 'EHLO again after XCLIENT');
    assert.doesNotMatch(await d.cmd('EHLO c.test'), /XCLIENT/, 'XCLIENT ADDR is offered once');
    await d.cmd('MAIL FROM:<a@x.test>');
    await d.cmd('RCPT TO:<b@y.test>');
    await d.cmd('DATA');
    await d.cmd('x\r\n.');
    const s = b.sessions[0]!;
    assert.deepEqual(s.xclient, { ADDR: '192.0.2.9', PORT: '555', HELO: 'c.test', NAME: '' });
    assert.deepEqual(b.messages[0]!.client, { address: '192.0.2.9', port: 555, helo: 'c.test' });
    assert.equal(s.bytes().toString().startsWith('EHLO proxy.test\r\n'), true, 'raw starts after the header');
    const bad = await Dialog.open(b);
    bad.send('EHLO x\r\n');
    await bad.closed;
    assert.equal(b.sessions.length, 1, 'no session without a header');
  });

  it('STARTTLS: drops what was pipelined behind it, records the session inside TLS', async () => {
    const b = await backend({ tls: await selfSignedCert() });
    const d = await Dialog.open(b);
    await d.reply();
    assert.match(await d.cmd('EHLO c'), /250-STARTTLS\r\n/);
    d.send('STARTTLS\r\nMAIL FROM:<smuggled@x.test>\r\n');
    assert.match(await d.reply(), /^220 /);
    await d.starttls();
    assert.doesNotMatch(await d.cmd('EHLO c'), /STARTTLS/);
    await d.cmd('MAIL FROM:<a@x.test>');
    await d.cmd('RCPT TO:<b@y.test>');
    await d.cmd('DATA');
    await d.cmd('secret\r\n.');
    const s = b.sessions[0]!;
    assert.equal(s.tls, true);
    assert.equal(b.messages[0]!.mailFrom, 'a@x.test');
    assert.match(s.bytes().toString(), /secret\r\n\.\r\n$/, 'decrypted bytes after the handshake');
    assert.ok(
      !s.lines.some((l) => l.includes('smuggled') && s.lines.indexOf(l) > s.lines.indexOf('STARTTLS') + 1),
    );
  });

  it('kill points: before the greeting, after the first RCPT, mid-DATA, after the dot', async () => {
    const early = await backend({ kill: 'before-greeting' });
    const a = await Dialog.open(early);
    await a.closed;
    assert.equal(a.ended, true);
    await assert.rejects(a.reply(), /closed/);
    assert.equal(early.sessions[0]!.closedBy, 'server');

    const rcpt = await backend({ kill: 'after-rcpt' });
    const r = await Dialog.open(rcpt);
    await r.reply();
    await r.cmd('EHLO c');
    await r.cmd('MAIL FROM:<a@x.test>');
    r.send('RCPT TO:<b@y.test>\r\nDATA\r\n');
    assert.equal(await r.reply(), '250 2.1.5 Accepted');
    await r.closed;
    await assert.rejects(r.reply(), /closed/, 'nothing answered after it');

    const mid = await backend({ kill: 'mid-data' });
    const m = await Dialog.open(mid);
    await envelope(m);
    await m.cmd('DATA');
    m.send('first content line\r\n');
    await m.closed;
    assert.equal(mid.messages.length, 0);

    const dot = await backend({ kill: 'after-dot' });
    const t = await Dialog.open(dot);
    await envelope(t);
    await t.cmd('DATA');
    t.send('body\r\n.\r\n');
    await t.closed;
    const [msg] = await dot.waitForMessages(1);
    assert.equal(msg!.data.toString(), 'body\r\n');
    assert.equal(msg!.reply, undefined);
  });

  it('counts sessions open at once; a 221 frees a place; keepData false keeps size and hash only', async () => {
    const b = await backend({ keepData: false, greetingDelayMs: 200 });
    const ds = await Promise.all([1, 2, 3].map(() => Dialog.open(b)));
    const t0 = Date.now();
    for (const d of ds) await d.reply();
    assert.ok(Date.now() - t0 >= 150, 'the greeting waits for onConnect');
    assert.equal(b.current, 3);
    assert.equal(b.maxConcurrent, 3);
    const d = ds[0]!;
    await d.cmd('EHLO c');
    await d.cmd('MAIL FROM:<a@x.test>');
    await d.cmd('RCPT TO:<b@y.test>');
    await d.cmd('DATA');
    const line = `${'y'.repeat(998)}\r\n`;
    assert.match(await d.cmd(`${line.repeat(100)}.`), /^250 /);
    assert.equal(await d.cmd('QUIT'), '221 2.0.0 Bye');
    assert.equal(b.current, 2);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.data.length, 0);
    assert.equal(m!.size, line.length * 100);
    assert.equal(m!.sha256, createHash('sha256').update(line.repeat(100)).digest('hex'));
    assert.ok(b.sessions[0]!.bytes().length < 1000, 'DATA reads left out of raw');
    for (const x of ds) x.socket.destroy();
  });
});
