// AUTH in the SMTP front on a real TCP connection (RFC 4954, PLAIN RFC 4616, LOGIN): the mechanisms
// with and without an initial response, `*` cancel, the 503/504/538/501 cases, AUTH never offered on
// a listener without it, and what the session is handed. Plus property tests of the SASL decoder:
// any client line gives one of its answers, never a throw, and PLAIN/LOGIN round-trip.
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Reply } from '@smtp-lb/upstream';
import fc from 'fast-check';
import { decodeBase64, type SaslCredentials, saslContinue, saslStart } from '../src/front/sasl.js';
import { type FrontSession, SmtpFront } from '../src/front/smtp-front.js';
import { replies, reply } from '../src/replies.js';
import type { Client, SmtpAddress, Transaction, Writable } from '../src/transaction.js';

const T = { timeout: 20_000 };
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

class AuthSession implements FrontSession {
  readonly client: Writable<Client>;
  transaction: Writable<Transaction> | undefined;
  readonly creds: SaslCredentials[] = [];
  constructor(socket: Socket) {
    this.client = {
      id: 'auth-test',
      address: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      destination: { address: '127.0.0.1', port: 0 },
      proxied: false,
      helo: '',
      proto: '',
      secure: false,
      user: undefined,
      userAddresses: undefined,
    };
  }
  hello(proto: 'ESMTP' | 'SMTP', name: string): void {
    this.client.helo = name;
    this.client.proto = proto;
  }
  secured(): void {}
  reset(): void {
    this.transaction = undefined;
  }
  async mail(from: SmtpAddress): Promise<Reply> {
    this.transaction = {
      client: this.client,
      id: 'x.1',
      mail: from,
      recipients: [],
      pool: undefined,
      backend: undefined,
      mailAtBackend: false,
    };
    return replies.mailAccepted();
  }
  async rcpt(): Promise<Reply> {
    return reply(250, '2.1.5', 'Ok');
  }
  async data(): Promise<Reply> {
    return reply(250, '2.0.0', 'Ok');
  }
  async auth(creds: SaslCredentials): Promise<Reply> {
    this.creds.push(creds);
    if (creds.password !== 'right') return replies.authFailed();
    this.client.user = creds.user;
    return replies.authSucceeded();
  }
  close(): void {}
  problem(): void {}
}

let server: Server;
let port: number;
let mode: { auth?: { plaintext: boolean } } = {};
let last: AuthSession | undefined;

before(async () => {
  server = createServer({ pauseOnConnect: true }, (socket) => {
    last = new AuthSession(socket);
    new SmtpFront(socket, last, {
      name: 'front.test',
      maxMessageSize: 1000,
      idleTimeout: 10_000,
      commandTimeout: 60_000,
      minDataRate: 0,
      dsn: true,
      ...mode,
    }).start();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
after(() => server.close());

/** Sends lines one at a time and returns the reply (all its lines) to each. */
async function dialog(lines: string[]): Promise<string[]> {
  const s = connect(port, '127.0.0.1');
  let text = '';
  let wake: (() => void) | undefined;
  s.on('data', (b) => {
    text += b.toString('latin1');
    wake?.();
  });
  s.on('error', () => {});
  const out: string[] = [];
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply; got ${JSON.stringify(text)}`)), 5000);
      const check = () => {
        const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(text);
        if (!m) {
          wake = check;
          return;
        }
        wake = undefined;
        clearTimeout(timer);
        text = text.slice(m[0].length);
        resolve(m[0].trimEnd());
      };
      check();
    });
  await next(); // greeting
  for (const line of lines) {
    s.write(`${line}\r\n`);
    out.push(await next());
  }
  s.destroy();
  return out;
}

describe('AUTH in the front', () => {
  test('offered in plaintext only where allowed; never where the listener has no AUTH', T, async () => {
    mode = {};
    let [ehlo, auth] = await dialog(['EHLO c.test', `AUTH PLAIN ${b64('\0u\0right')}`]);
    assert.doesNotMatch(ehlo!, /AUTH/);
    assert.equal(auth, '500 5.5.1 Command not recognized');
    mode = { auth: { plaintext: false } };
    [ehlo, auth] = await dialog(['EHLO c.test', `AUTH PLAIN ${b64('\0u\0right')}`]);
    assert.doesNotMatch(ehlo!, /AUTH/);
    assert.equal(auth, '538 5.7.11 Encryption required for requested authentication mechanism');
    assert.equal(last?.creds.length, 0, 'nothing reached the session');
    mode = { auth: { plaintext: true } };
    [ehlo] = await dialog(['EHLO c.test']);
    assert.match(ehlo!, /^250-AUTH PLAIN LOGIN$/m);
  });

  test('PLAIN with an initial response, after 334, and "=" as an empty one', T, async () => {
    mode = { auth: { plaintext: true } };
    assert.deepEqual(
      (await dialog(['EHLO c.test', `AUTH PLAIN ${b64('\0alice@example.com\0right')}`]))[1],
      '235 2.7.0 Authentication successful',
    );
    assert.deepEqual(last?.creds, [
      { mechanism: 'PLAIN', authzid: '', user: 'alice@example.com', password: 'right' },
    ]);
    const r = await dialog(['HELO c.test', 'AUTH plain', b64('bob\0bob\0wrong')]);
    assert.deepEqual(r.slice(1), ['334', '535 5.7.8 Authentication credentials invalid']);
    assert.deepEqual(last?.creds[0], { mechanism: 'PLAIN', authzid: 'bob', user: 'bob', password: 'wrong' });
    assert.deepEqual((await dialog(['HELO c.test', 'AUTH PLAIN ='])).slice(1), [
      '501 5.5.2 Cannot decode the authentication response',
    ]);
  });

  test('LOGIN asks for user name and password, with or without an initial user name', T, async () => {
    mode = { auth: { plaintext: true } };
    const r = await dialog(['HELO c.test', 'AUTH LOGIN', b64('carol'), b64('right'), 'MAIL FROM:<c@x.test>']);
    assert.deepEqual(r.slice(1), [
      '334 VXNlcm5hbWU6',
      '334 UGFzc3dvcmQ6',
      '235 2.7.0 Authentication successful',
      '250 2.1.0 Accepted',
    ]);
    assert.deepEqual(last?.creds, [{ mechanism: 'LOGIN', authzid: '', user: 'carol', password: 'right' }]);
    const i = await dialog(['HELO c.test', `AUTH LOGIN ${b64('dave')}`, b64('right')]);
    assert.deepEqual(i.slice(1), ['334 UGFzc3dvcmQ6', '235 2.7.0 Authentication successful']);
  });

  test('cancel, bad base64, unknown mechanism, twice, inside a transaction, before HELO', T, async () => {
    mode = { auth: { plaintext: true } };
    assert.deepEqual(await dialog(['AUTH PLAIN']), ['503 5.5.1 Error: send HELO/EHLO first']);
    const r = await dialog([
      'HELO c.test',
      'AUTH LOGIN',
      '*',
      'AUTH PLAIN',
      'not base64!',
      'AUTH CRAM-MD5',
      'AUTH PLAIN a b',
      'MAIL FROM:<a@x.test>',
      `AUTH PLAIN ${b64('\0u\0right')}`,
      'RSET',
      `AUTH PLAIN ${b64('\0u\0right')}`,
      `AUTH PLAIN ${b64('\0u\0right')}`,
      'NOOP',
    ]);
    assert.deepEqual(r.slice(1), [
      '334 VXNlcm5hbWU6',
      '501 5.0.0 Authentication cancelled',
      '334',
      '501 5.5.2 Cannot decode the authentication response',
      '504 5.5.4 Unrecognized authentication type',
      '504 5.5.4 Unrecognized authentication type',
      '250 2.1.0 Accepted',
      '503 5.5.1 AUTH not permitted during a mail transaction',
      '250 2.0.0 Flushed',
      '235 2.7.0 Authentication successful',
      '503 5.5.1 Already authenticated',
      '250 2.0.0 OK',
    ]);
  });

  test('a 16 KiB SASL line and NULs in every field: answered, the session goes on', T, async () => {
    mode = { auth: { plaintext: true } };
    const big = 'A'.repeat(12_000);
    const r = await dialog([
      'HELO c.test',
      'AUTH PLAIN',
      big,
      `AUTH PLAIN ${b64('\0\0\0\0')}`,
      `AUTH PLAIN ${b64('u\0\0right')}`,
      `AUTH LOGIN ${b64('a\0b')}`,
      'NOOP',
    ]);
    assert.deepEqual(r.slice(1), [
      '334',
      '501 5.5.2 Cannot decode the authentication response',
      '501 5.5.2 Cannot decode the authentication response',
      '501 5.5.2 Cannot decode the authentication response',
      '501 5.5.2 Cannot decode the authentication response',
      '250 2.0.0 OK',
    ]);
  });
});

describe('fuzzed AUTH dialogs on a real connection (seeded)', () => {
  test(
    'random payloads and step counts: every line answered with a SASL reply, the session lives on',
    T,
    async () => {
      mode = { auth: { plaintext: true } };
      const payload = fc.oneof(
        fc.base64String({ maxLength: 300 }),
        fc.string({ maxLength: 300 }).map((x) => x.replace(/[\r\n]/g, '')),
        fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('base64')),
        fc.constantFrom('*', '=', '', '====', `${'A'.repeat(8000)}=`),
      );
      const dialogs = fc.sample(
        fc.tuple(
          fc.constantFrom('AUTH PLAIN', 'AUTH LOGIN', 'AUTH plain x', 'AUTH LOGIN ='),
          fc.array(payload, { maxLength: 4 }),
        ),
        { seed: 1313, numRuns: 60 },
      );
      for (const [start, lines] of dialogs) {
        const r = await dialog(['HELO c.test', start, ...lines, 'RSET', 'NOOP']);
        for (const line of r.slice(1, -2))
          assert.match(line, /^(334|235|535|501|500|503|504)( |$)/, `${start} ${lines}`);
        // Whatever the exchange, the session is in a state where commands work again.
        assert.match(r.at(-1)!, /^(250 2\.0\.0 OK|501 5\.\d\.\d .*)$/, JSON.stringify([start, ...lines]));
      }
    },
  );

  test(
    'a 100 KiB AUTH response line ends the session with 500 5.5.2, like any line that long',
    T,
    async () => {
      mode = { auth: { plaintext: true } };
      const r = await dialog(['HELO c.test', 'AUTH PLAIN', 'A'.repeat(100 * 1024)]);
      assert.deepEqual(r.slice(1), ['334', '500 5.5.2 Line too long']);
    },
  );
});

describe('SASL decoder (property tests, seeded)', () => {
  const params = { seed: 1313, numRuns: 2000 };
  test('any line after any step gives an answer, never a throw', T, () => {
    fc.assert(
      fc.property(
        fc.constantFrom<'PLAIN' | 'LOGIN'>('PLAIN', 'LOGIN'),
        fc.option(fc.string({ maxLength: 64 }), { nil: undefined }),
        fc.array(fc.oneof(fc.string({ maxLength: 200 }), fc.base64String({ maxLength: 200 })), {
          maxLength: 4,
        }),
        (mech, initial, lines) => {
          let step = saslStart(mech, initial);
          for (const line of lines) {
            if (step.kind !== 'challenge') break;
            step = saslContinue(step.next, line);
          }
          assert.ok(['challenge', 'done', 'cancelled', 'malformed'].includes(step.kind));
          if (step.kind === 'done') {
            assert.ok(step.credentials.user.length > 0 && step.credentials.password.length > 0);
            assert.ok(!/[\x00-\x1f]/.test(step.credentials.user));
          }
        },
      ),
      params,
    );
  });

  test('PLAIN and LOGIN round-trip the credentials a client encodes', T, () => {
    const name = fc
      .string({ minLength: 1, maxLength: 100 })
      .filter((s) => !/[\x00-\x1f\x7f\ud800-\udfff]/.test(s));
    const pass = fc.string({ minLength: 1, maxLength: 100 }).filter((s) => !/[\x00\ud800-\udfff]/.test(s));
    fc.assert(
      fc.property(name, pass, (user, password) => {
        const p = saslStart('PLAIN', b64(`\0${user}\0${password}`));
        assert.deepEqual(p, {
          kind: 'done',
          credentials: { mechanism: 'PLAIN', authzid: '', user, password },
        });
        const l1 = saslStart('LOGIN', undefined);
        assert.equal(l1.kind, 'challenge');
        const l2 = l1.kind === 'challenge' ? saslContinue(l1.next, b64(user)) : l1;
        const l3 = l2.kind === 'challenge' ? saslContinue(l2.next, b64(password)) : l2;
        assert.deepEqual(l3, {
          kind: 'done',
          credentials: { mechanism: 'LOGIN', authzid: '', user, password },
        });
      }),
      params,
    );
  });

  test('decodeBase64 accepts exactly canonical base64 of valid UTF-8', T, () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64');
        const decoded = decodeBase64(text);
        const utf8 = Buffer.from(Buffer.from(bytes).toString('utf8'), 'utf8').equals(Buffer.from(bytes));
        assert.equal(decoded !== undefined, utf8);
        assert.equal(decodeBase64(`${text}!`), undefined);
      }),
      params,
    );
  });
});
