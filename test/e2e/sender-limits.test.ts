// Per-user limits and suspension, cluster-wide: two nodes on one Redis. A user who sends past its
// limit through node A is suspended and refused by node B too; B's admin API and `smtp-lb senders`
// list it and lift it (token required), after which the user sends again. Without Redis (one node):
// `onExceed: reject` answers 450 4.7.1 without suspending, and concurrent sessions per user are
// capped (454 4.7.0). Clients are nodemailer and swaks; AUTH in plaintext on loopback.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type CaptureBackend, type RedisServer, startCaptureBackend, startRedis } from '@smtp-lb/testkit';
import nodemailer from 'nodemailer';
import { CLI } from '../helpers/cli-node.js';
import { startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const run = promisify(execFile);
const TOKEN = 'sender-admin-token';
const b64 = (s: string) => Buffer.from(s).toString('base64');

function users(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'smtp-lb-senders-')), 'users');
  execFileSync('htpasswd', ['-cbB', '-C', '5', file, 'alice@example.com', 'alice-pw']);
  execFileSync('htpasswd', ['-bB', '-C', '5', file, 'bob@example.com', 'bob-pw']);
  return file;
}

function config(id: string, backend: string, file: string, extra: string): string {
  return `
node: { id: ${id} }
listeners:
  - name: submission
    listen: 127.0.0.1:0
    hostname: ${id}.test
    role: submission
    auth: { verify: file, file: "${file}", allowPlaintext: true }
pools:
  relay:
    static: [{ address: ${backend} }]
    tls: none
admin: { listen: 127.0.0.1:0, token: ${TOKEN} }
log: { level: info }
${extra}
`;
}

async function send(lb: TestNode, user: string, pass: string, n = 1): Promise<Array<string | number>> {
  const t = nodemailer.createTransport({
    host: '127.0.0.1',
    port: lb.port,
    secure: false,
    ignoreTLS: true,
    auth: { user, pass },
  });
  const out: Array<string | number> = [];
  try {
    for (let i = 0; i < n; i++) {
      try {
        const info = await t.sendMail({ from: user, to: 'rcpt@example.net', subject: `m${i}`, text: 'x' });
        out.push(Number(info.response.slice(0, 3)));
      } catch (err) {
        out.push((err as { response?: string }).response ?? String(err));
      }
    }
  } finally {
    t.close();
  }
  return out;
}

const admin = (lb: TestNode) => `http://127.0.0.1:${lb.node.adminAddress!.port}`;

describe('sender limits on two nodes sharing Redis', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let backend: CaptureBackend;
  let a: TestNode;
  let b: TestNode;
  before(async () => {
    redis = await startRedis();
    backend = await startCaptureBackend();
    const file = users();
    const extra = `ledger: { redis: ${redis.url}, keyPrefix: senders-e2e }
senders:
  limits: { messages: { limit: 3, window: 1h } }
  onExceed: suspend`;
    a = await startNode(config('node-a', backend.address, file, extra));
    b = await startNode(config('node-b', backend.address, file, extra));
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await backend?.close();
    await redis?.stop();
  });

  test('over the limit through A and B together: suspended, refused by both', async () => {
    assert.deepEqual(await send(a, 'alice@example.com', 'alice-pw', 2), [250, 250]);
    assert.deepEqual(await send(b, 'alice@example.com', 'alice-pw', 1), [250]);
    // The fourth message of the hour, on B: B suspends alice for the whole cluster.
    assert.deepEqual(await send(b, 'alice@example.com', 'alice-pw', 1), [
      '554 5.7.1 Account suspended, contact the postmaster',
    ]);
    assert.deepEqual(await send(a, 'alice@example.com', 'alice-pw', 1), [
      '554 5.7.1 Account suspended, contact the postmaster',
    ]);
    assert.deepEqual(await send(a, 'bob@example.com', 'bob-pw', 1), [250], 'another user is not affected');
    assert.ok(b.logs.some((l) => l.msg === 'user suspended' && l.user === 'alice@example.com'));
    const metrics = await (await fetch(`${admin(a)}/metrics`)).text();
    assert.match(metrics, /^smtp_lb_senders_suspended 1$/m);
  });

  test("B's admin API and `smtp-lb senders` list the suspension made on B, and lift it for A", async () => {
    assert.equal((await fetch(`${admin(a)}/senders/suspended`)).status, 401, 'the token is required');
    const auth = { authorization: `Bearer ${TOKEN}` };
    const listed = (await (await fetch(`${admin(a)}/senders/suspended`, { headers: auth })).json()) as {
      suspended: Array<{ user: string; node: string; reason: string }>;
    };
    assert.deepEqual(
      listed.suspended.map((s) => [s.user, s.node, s.reason]),
      [['alice@example.com', 'node-b', 'messages over 3 per 3600s']],
    );
    const cli = await run(process.execPath, [CLI, 'senders', '--admin', admin(b), '--token', TOKEN]);
    assert.match(
      cli.stdout,
      /^USER\s+SINCE\s+NODE\s+REASON\nalice@example\.com\s+\S+Z\s+node-b\s+messages over 3/,
    );
    assert.equal(
      (await fetch(`${admin(b)}/senders/suspended/alice%40example.com`, { method: 'DELETE' })).status,
      401,
    );
    const lift = await run(process.execPath, [
      CLI,
      'senders',
      'lift',
      'alice@example.com',
      '--admin',
      admin(b),
      '--token',
      TOKEN,
    ]);
    assert.equal(lift.stdout, 'lifted the suspension of alice@example.com\n');
    assert.deepEqual(await send(a, 'alice@example.com', 'alice-pw', 1), [250], 'A lets alice send again');
    const again = await run(process.execPath, [CLI, 'senders', '--admin', admin(a), '--token', TOKEN]);
    assert.equal(again.stdout, 'no suspended senders\n');
  });
});

describe('sender limits on one node without Redis', { timeout: 60_000 }, () => {
  let backend: CaptureBackend;
  let lb: TestNode;
  before(async () => {
    backend = await startCaptureBackend();
    lb = await startNode(
      config(
        'solo',
        backend.address,
        users(),
        `senders:
  limits: { messages: { limit: 2, window: 1h }, recipients: { limit: 100, window: 1h }, sessions: 1 }
  onExceed: reject`,
      ),
    );
  });
  after(async () => {
    await lb?.stop();
    await backend?.close();
  });

  test('onExceed: reject answers 450 4.7.1 and suspends nobody', async () => {
    assert.deepEqual(await send(lb, 'alice@example.com', 'alice-pw', 3), [
      250,
      250,
      '450 4.7.1 Sender over its limit, try again later',
    ]);
    const list = await fetch(`${admin(lb)}/senders/suspended`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.deepEqual(await list.json(), { suspended: [] });
  });

  test('a second concurrent session of the same user gets 454 4.7.0', async () => {
    const open = async () => {
      const d = await SmtpDialog.open(lb.port);
      await d.read();
      d.write('EHLO c.test\r\n');
      await d.read();
      d.write(`AUTH PLAIN ${b64('\0bob@example.com\0bob-pw')}\r\n`);
      return { d, reply: (await d.read()).raw };
    };
    const first = await open();
    assert.equal(first.reply, '235 2.7.0 Authentication successful\r\n');
    const second = await open();
    assert.equal(second.reply, '454 4.7.0 Too many sessions for this user, try again later\r\n');
    first.d.write('QUIT\r\n');
    await first.d.read();
    second.d.write(`AUTH PLAIN ${b64('\0bob@example.com\0bob-pw')}\r\n`);
    // The first session's place is free once it has closed.
    let r = (await second.d.read()).raw;
    for (let i = 0; i < 20 && !r.startsWith('235'); i++) {
      await new Promise((res) => setTimeout(res, 100));
      second.d.write(`AUTH PLAIN ${b64('\0bob@example.com\0bob-pw')}\r\n`);
      r = (await second.d.read()).raw;
    }
    assert.equal(r, '235 2.7.0 Authentication successful\r\n');
    second.d.write('QUIT\r\n');
  });
});

describe('failed AUTH with auth.failures.action: tarpit', { timeout: 60_000 }, () => {
  let backend: CaptureBackend;
  let lb: TestNode;
  before(async () => {
    backend = await startCaptureBackend();
    const yaml = config('tarpit', backend.address, users(), 'shaping: { tarpit: { delay: 600ms } }').replace(
      'allowPlaintext: true }',
      'allowPlaintext: true, failures: { perClient: 1, perUser: 0, window: 1m, action: tarpit } }',
    );
    lb = await startNode(yaml);
  });
  after(async () => {
    await lb?.stop();
    await backend?.close();
  });

  test('over the limit the session is slowed down, and the right password still gets in', async () => {
    const d = await SmtpDialog.open(lb.port);
    await d.read();
    d.write('EHLO c.test\r\n');
    await d.read();
    const timed = async (line: string) => {
      const t0 = Date.now();
      d.write(`${line}\r\n`);
      return { raw: (await d.read()).raw, ms: Date.now() - t0 };
    };
    const wrong = await timed(`AUTH PLAIN ${b64('\0alice@example.com\0nope')}`);
    assert.equal(wrong.raw, '535 5.7.8 Authentication credentials invalid\r\n');
    assert.ok(wrong.ms < 600, `the first failure is not delayed (${wrong.ms} ms)`);
    const right = await timed(`AUTH PLAIN ${b64('\0alice@example.com\0alice-pw')}`);
    assert.equal(right.raw, '235 2.7.0 Authentication successful\r\n');
    assert.ok(right.ms >= 550, `held by the tarpit (${right.ms} ms)`);
    assert.ok(lb.logs.some((l) => l.msg === 'AUTH tarpitted: too many failed attempts'));
    d.write('QUIT\r\n');
  });
});

describe('an outbound listener: AUTH optional, the sender rules for those who use it', {
  timeout: 60_000,
}, () => {
  let backend: CaptureBackend;
  let lb: TestNode;
  before(async () => {
    backend = await startCaptureBackend();
    lb = await startNode(
      config('outbound', backend.address, users(), '').replace(
        'role: submission',
        'role: outbound\n    clients: [127.0.0.0/8]',
      ),
    );
  });
  after(async () => {
    await lb?.stop();
    await backend?.close();
  });

  test('MAIL without AUTH is relayed; an authenticated user may not use a foreign sender', async () => {
    const d = await SmtpDialog.open(lb.port);
    await d.read();
    d.write('EHLO host.internal\r\n');
    assert.match((await d.read()).raw, /250-AUTH PLAIN LOGIN/);
    for (const [line, want] of [
      ['MAIL FROM:<anyone@host.internal>', '250 2.1.0 Accepted'],
      ['RCPT TO:<rcpt@example.net>', '250 '],
      ['RSET', '250 2.0.0 Flushed'],
      [`AUTH PLAIN ${b64('\0alice@example.com\0alice-pw')}`, '235 2.7.0 Authentication successful'],
      ['MAIL FROM:<anyone@host.internal>', '553 5.7.1 <anyone@host.internal>: Sender address not owned'],
      ['MAIL FROM:<alice@example.com>', '250 2.1.0 Accepted'],
    ] as const) {
      d.write(`${line}\r\n`);
      assert.ok((await d.read()).raw.startsWith(want), line);
    }
    d.write('QUIT\r\n');
  });
});
