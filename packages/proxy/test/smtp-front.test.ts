// The SMTP front on a real TCP connection: DATA framing (end only at CRLF.CRLF, a leading dot after
// LF un-stuffed) for every way a message can be split into TCP chunks, pipelined commands answered
// in order, command syntax answers, the 421 that ends a session, and the idle timeout.
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createSecureContext, type SecureContext, connect as tlsConnect } from 'node:tls';
import { selfSignedCert } from '@smtp-lb/testkit';
import type { Reply } from '@smtp-lb/upstream';
import { type FrontSession, parsePath, SmtpFront } from '../src/front/smtp-front.js';
import { reply } from '../src/replies.js';
import type { Client, Recipient, SmtpAddress, Transaction, Writable } from '../src/transaction.js';
import { dataCases as cases } from './data-cases.js';

interface Seen {
  bodies: string[];
  mails: SmtpAddress[];
  rcpts: SmtpAddress[];
  resets: number;
  closed: number;
}

/** The session's answers; a test replaces those it is about. */
interface Answers {
  mail(from: SmtpAddress): Promise<Reply>;
  rcpt(to: SmtpAddress): Promise<Reply>;
  data(body: Readable): Promise<Reply>;
}

function answers(seen: Seen, overrides: Partial<Answers>): Answers {
  return {
    mail: async (from) => {
      seen.mails.push(from);
      return reply(250, '2.1.0', 'Accepted');
    },
    rcpt: async (to) => {
      seen.rcpts.push(to);
      return { code: 250, enhanced: '2.1.5', lines: ['2.1.5 Ok'] };
    },
    data: (body: Readable) =>
      new Promise<Reply>((resolve, reject) => {
        const parts: Buffer[] = [];
        body.on('data', (b: Buffer) => parts.push(b));
        body.on('error', reject);
        body.on('end', () => {
          seen.bodies.push(Buffer.concat(parts).toString('latin1'));
          resolve({ code: 250, enhanced: '2.0.0', lines: [`2.0.0 Ok: queued as ${seen.bodies.length}`] });
        });
      }),
    ...overrides,
  };
}

/** The front's counterpart, keeping the transaction as the real session does (2xx opens, adds). */
class TestSession implements FrontSession {
  readonly client: Writable<Client>;
  transaction: (Writable<Transaction> & { recipients: Recipient[] }) | undefined;
  readonly #seen: Seen;
  readonly #answers: Answers;

  constructor(socket: Socket, seen: Seen, a: Answers) {
    this.client = {
      id: 'test',
      address: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      destination: { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
      proxied: false,
      helo: '',
      proto: '',
      secure: false,
      user: undefined,
      userAddresses: undefined,
    };
    this.#seen = seen;
    this.#answers = a;
  }
  hello(proto: 'ESMTP' | 'SMTP', name: string): void {
    this.transaction = undefined;
    this.client.helo = name;
    this.client.proto = proto;
  }
  secured(): void {
    this.transaction = undefined;
    this.client.secure = true;
    this.client.helo = '';
    this.client.proto = '';
  }
  reset(): void {
    this.#seen.resets++;
    this.transaction = undefined;
  }
  async mail(from: SmtpAddress): Promise<Reply> {
    const r = await this.#answers.mail(from);
    if (r.code < 300) {
      this.transaction = {
        client: this.client,
        id: 'test.1',
        mail: from,
        recipients: [],
        pool: undefined,
        backend: undefined,
        mailAtBackend: false,
      };
    }
    return r;
  }
  async rcpt(to: SmtpAddress): Promise<Reply> {
    const r = await this.#answers.rcpt(to);
    if (r.code < 300) this.transaction?.recipients.push({ ...to, pool: 'test' });
    return r;
  }
  async data(body: Readable): Promise<Reply> {
    try {
      return await this.#answers.data(body);
    } finally {
      this.transaction = undefined;
    }
  }
  async auth(): Promise<Reply> {
    return reply(535, '5.7.8', 'no AUTH here');
  }
  close(): void {
    this.#seen.closed++;
  }
  problem(): void {}
}

let server: Server;
let port: number;
let current: { seen: Seen; overrides: Partial<Answers>; idle: number; tls?: SecureContext };

before(async () => {
  server = createServer({ pauseOnConnect: true }, (socket) => {
    const session = new TestSession(socket, current.seen, answers(current.seen, current.overrides));
    const front = new SmtpFront(socket, session, {
      name: 'front.test',
      maxMessageSize: 1000,
      idleTimeout: current.idle,
      commandTimeout: 60_000,
      minDataRate: 0,
      starttls: current.tls ? () => current.tls : undefined,
      dsn: true,
    });
    front.start();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
after(() => server.close());

function fresh(overrides: Partial<Answers> = {}, idle = 10_000): Seen {
  const seen: Seen = { bodies: [], mails: [], rcpts: [], resets: 0, closed: 0 };
  current = { seen, overrides, idle };
  return seen;
}

/** Opens a client; `until(n)` resolves once `n` complete replies (final lines) have arrived. */
async function client(): Promise<{
  s: Socket;
  replies: () => string[];
  until(n: number): Promise<string[]>;
}> {
  const s = connect(port, '127.0.0.1');
  s.setNoDelay(true);
  let text = '';
  const waiters: Array<() => void> = [];
  s.on('data', (b) => {
    text += b.toString('latin1');
    for (const w of waiters.splice(0)) w();
  });
  s.on('error', () => {});
  const finals = () => text.split('\r\n').filter((l) => /^\d{3} /.test(l));
  const until = (n: number) =>
    new Promise<string[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} replies: ${text}`)), 5000);
      const check = () => {
        if (finals().length >= n) {
          clearTimeout(timer);
          resolve(finals());
        } else waiters.push(check);
      };
      check();
    });
  await until(1);
  return { s, replies: finals, until };
}

const nextTick = () => new Promise((r) => setImmediate(r));

describe('DATA framing', () => {
  for (const [name, wire, content] of cases) {
    test(`${name}: the same content for every split into two chunks`, async () => {
      const seen = fresh();
      const c = await client();
      c.s.write('EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n');
      await c.until(5);
      let replies = 5;
      const bytes = Buffer.from(wire, 'latin1');
      for (let cut = 0; cut <= bytes.length; cut++) {
        c.s.write(bytes.subarray(0, cut));
        await nextTick();
        c.s.write(bytes.subarray(cut));
        replies++;
        const got = await c.until(replies);
        assert.match(got[replies - 1]!, /^250 2\.0\.0 Ok: queued/, `cut at ${cut}`);
        assert.equal(seen.bodies[seen.bodies.length - 1], content, `cut at ${cut}`);
        c.s.write('MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n');
        replies += 3;
        await c.until(replies);
      }
      // One message per cut and nothing else: no byte sequence ended the data early.
      assert.equal(seen.bodies.length, bytes.length + 1);
      c.s.destroy();
    });
  }

  test('a message byte by byte, and commands pipelined behind the final dot', async () => {
    const seen = fresh();
    const c = await client();
    c.s.write('EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n');
    await c.until(5);
    for (const b of Buffer.from('x\r\n..y\r\n.\r\nNOOP\r\nQUIT\r\n')) {
      c.s.write(Buffer.from([b]));
      await nextTick();
    }
    const got = await c.until(8);
    assert.deepEqual(got.slice(5), ['250 2.0.0 Ok: queued as 1', '250 2.0.0 OK', '221 2.0.0 Bye']);
    assert.deepEqual(seen.bodies, ['x\r\n.y\r\n']);
  });

  test('a client that leaves mid-DATA: the body fails, the session closes once', async () => {
    let failed: Error | undefined;
    const seen = fresh({
      data: (body) =>
        new Promise<Reply>((resolve) => {
          body.on('error', (err) => {
            failed = err;
            resolve({ code: 451, lines: ['4.4.2 lost'] });
          });
          body.resume();
        }),
    });
    const c = await client();
    c.s.write('EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\npart of a message\r\n');
    await c.until(5);
    c.s.destroy();
    for (let i = 0; i < 50 && seen.closed === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(seen.closed, 1);
    assert.match(failed?.message ?? '', /client went away/);
  });
});

describe('commands', () => {
  test('pipelined commands are answered in order, each after its answer', async () => {
    const seen = fresh({
      rcpt: async (to) => {
        await new Promise((r) => setTimeout(r, to.address.startsWith('slow') ? 30 : 0));
        return { code: 250, enhanced: '2.1.5', lines: [`2.1.5 <${to.address}> ok`] };
      },
    });
    const c = await client();
    c.s.write(
      'EHLO c.test\r\nMAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<slow@d.test>\r\nRCPT TO:<fast@d.test>\r\nRSET\r\nNOOP\r\n',
    );
    const got = await c.until(7);
    assert.deepEqual(got.slice(2), [
      '250 2.1.0 Accepted',
      '250 2.1.5 <slow@d.test> ok',
      '250 2.1.5 <fast@d.test> ok',
      '250 2.0.0 Flushed',
      '250 2.0.0 OK',
    ]);
    assert.deepEqual(seen.mails, [{ address: '', args: { BODY: '8BITMIME' } }]);
    assert.equal(seen.resets, 1);
  });

  test('a flood of pipelined commands (more than a line cap of input while the session works) is answered in full, in order', async () => {
    const seen = fresh({
      rcpt: async (to) => {
        seen.rcpts.push(to);
        await new Promise((r) => setImmediate(r));
        return { code: 250, enhanced: '2.1.5', lines: [`2.1.5 <${to.address}> ok`] };
      },
    });
    const c = await client();
    const n = 1500; // ~40 KiB of commands in one write: the front pauses the socket and resumes it
    const rcpts = Array.from({ length: n }, (_, i) => `RCPT TO:<r${i}@d.test>\r\n`).join('');
    c.s.write(`EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n${rcpts}`);
    // Sent after the front paused reading: it must have resumed to see it.
    await new Promise((r) => setTimeout(r, 50));
    c.s.write('QUIT\r\n');
    const got = await c.until(n + 4);
    assert.equal(got[2], '250 2.1.0 Accepted');
    for (let i = 0; i < n; i++) assert.equal(got[3 + i], `250 2.1.5 <r${i}@d.test> ok`);
    assert.equal(got[n + 3], '221 2.0.0 Bye');
    assert.equal(seen.rcpts.length, n);
  });

  test('sequence and syntax errors get 5xx without reaching the session', async () => {
    const seen = fresh();
    const c = await client();
    const lines = [
      'MAIL FROM:<a@b.test>', // before EHLO
      'EHLO',
      'EHLO c.test',
      'RCPT TO:<c@d.test>', // before MAIL
      'DATA',
      'MAIL FROM:a@b.test',
      'MAIL FROM:<a@b.test> SIZE=1001',
      'MAIL FROM:<a@b.test> SIZE=1 SIZE=2',
      'MAIL FROM:<a@b.test> BODY=9BIT',
      'XCLIENT ADDR=1.2.3.4',
      'FROB',
      'MAIL FROM:<a@b.test>',
      'MAIL FROM:<a@b.test>',
      'RCPT TO:<>',
      'RCPT TO:<c@d.test> NOTIFY=NEVER,SUCCESS',
      'DATA',
      'VRFY x',
    ];
    c.s.write(`${lines.join('\r\n')}\r\n`);
    const got = await c.until(lines.length + 1);
    assert.deepEqual(
      got.slice(1).map((l) => l.slice(0, 9)),
      [
        '503 5.5.1',
        '501 5.5.4',
        '250 SIZE ',
        '503 5.5.1',
        '503 5.5.1',
        '501 5.5.4',
        '552 5.3.4',
        '501 5.5.4',
        '501 5.5.4',
        '550 5.7.0',
        '500 5.5.1',
        '250 2.1.0',
        '503 5.5.1',
        '501 5.1.3',
        '501 5.5.4',
        '503 5.5.1',
        '252 2.5.0',
      ],
    );
    assert.equal(seen.mails.length, 1);
    assert.equal(seen.rcpts.length, 0);
  });

  test('a 421 from the session ends the session', async () => {
    fresh({ mail: async () => ({ code: 421, enhanced: '4.7.0', lines: ['4.7.0 go away'] }) });
    const c = await client();
    const closed = new Promise((r) => c.s.on('close', r));
    c.s.write('EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\n');
    await closed;
    assert.equal(c.replies()[2], '421 4.7.0 go away');
    assert.equal(c.replies().length, 3, 'nothing after the 421');
  });

  for (const request of [
    'GET / HTTP/1.1',
    'CONNECT mx.example.test:25 HTTP/1.1',
    'GET http://a.test/ HTTP/1.0',
  ]) {
    test(`an HTTP request line (${request}) gets 421 4.7.0 and the session ends`, async () => {
      fresh();
      const c = await client();
      const closed = new Promise((r) => c.s.on('close', r));
      c.s.write(`${request}\r\nHost: a.test\r\n\r\n`);
      await closed;
      assert.deepEqual(c.replies().slice(1), ['421 4.7.0 HTTP requests not allowed']);
    });
  }

  test('an idle client gets 421 and is disconnected', async () => {
    const seen = fresh({}, 150);
    const c = await client();
    const closed = new Promise((r) => c.s.on('close', r));
    await closed;
    assert.match(c.replies()[1] ?? '', /^421 4\.4\.2 /);
    for (let i = 0; i < 50 && seen.closed === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(seen.closed, 1);
  });

  test('a command line over 16 KiB gets 500 and the session ends', async () => {
    fresh();
    const c = await client();
    const closed = new Promise((r) => c.s.on('close', r));
    c.s.write(`NOOP ${'x'.repeat(17 * 1024)}`);
    await closed;
    assert.match(c.replies()[1] ?? '', /^500 5\.5\.2 /);
  });
});

test('STARTTLS: plaintext pipelined behind it is dropped, the session starts over inside TLS', async () => {
  const seen = fresh();
  const pem = await selfSignedCert();
  current.tls = createSecureContext({ key: pem.key, cert: pem.cert });
  const c = await client();
  c.s.write('EHLO c.test\r\n');
  const ehlo = await c.until(2);
  assert.ok(c.replies().length === 2 && ehlo[1] === '250 SIZE 1000');
  // RFC 3207 4.2: the MAIL after STARTTLS in the same packet must not count.
  c.s.write('STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n');
  await c.until(3);
  assert.equal(c.replies()[2], '220 2.0.0 Ready to start TLS');
  c.s.removeAllListeners('data');
  const secure = tlsConnect({ socket: c.s, rejectUnauthorized: false });
  await new Promise<void>((r) => secure.once('secureConnect', () => r()));
  let text = '';
  secure.on('data', (b) => {
    text += b.toString('latin1');
  });
  secure.write('MAIL FROM:<a@b.test>\r\nEHLO c.test\r\nMAIL FROM:<a@b.test>\r\nQUIT\r\n');
  await new Promise((r) => secure.once('close', r));
  const finals = text.split('\r\n').filter((l) => /^\d{3} /.test(l));
  assert.deepEqual(finals, [
    '503 5.5.1 Error: send HELO/EHLO first',
    '250 SIZE 1000',
    '250 2.1.0 Accepted',
    '221 2.0.0 Bye',
  ]);
  assert.ok(!/STARTTLS/.test(text), 'no STARTTLS offered inside TLS');
  assert.match(text, /250-REQUIRETLS/);
  assert.deepEqual(
    seen.mails.map((m) => m.address),
    ['a@b.test'],
    'the plaintext MAIL never reached the session',
  );
  current.tls = undefined;
});

test('parsePath keeps the address and parameters as written', () => {
  assert.deepEqual(parsePath('MAIL FROM:<@relay.test:a@b.test> SIZE=10 SMTPUTF8', 'FROM'), {
    address: 'a@b.test',
    args: { SIZE: '10', SMTPUTF8: true },
  });
  assert.deepEqual(parsePath('RCPT TO: <Postmaster> ORCPT=rfc822;a+2Bb@c.test', 'TO'), {
    address: 'Postmaster',
    args: { ORCPT: 'rfc822;a+2Bb@c.test' },
  });
  assert.deepEqual(parsePath('mail from:<a@xn--bcher-kva.test>', 'FROM'), {
    address: 'a@xn--bcher-kva.test',
    args: {},
  });
  assert.equal(typeof parsePath('MAIL FROM:<a@b@c>x', 'FROM'), 'string');
  assert.equal(typeof parsePath('MAIL FROM:<noat>', 'FROM'), 'string');
  assert.equal(typeof parsePath('RCPT TO:<a@b.test', 'TO'), 'string');
});
