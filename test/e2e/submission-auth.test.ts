// Authenticated submission end to end: real clients (swaks, nodemailer) against submission
// listeners of one node with each verifier (an htpasswd file written by `htpasswd -B`, an HTTP auth
// service, a backend Postfix whose SASL is a private Dovecot), a real Postfix behind them that logs
// the SASL user, and every reply of the AUTH and sender rules. A verifier that hangs, answers
// garbage or resets gives 454 4.7.0 while the node serves others; no password ever reaches a log.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  finalDataReply,
  type PostfixInstance,
  runSwaks,
  selfSignedCert,
  startCaptureBackend,
  startPostfix,
} from '@smtp-lb/testkit';
import nodemailer from 'nodemailer';
import { startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const PASSWORD = 'Corr3ct-Horse';
const b64 = (s: string) => Buffer.from(s).toString('base64');

type HttpMode = 'ok' | 'hang' | 'garbage' | 'reset' | 'refuse';

describe('submission with AUTH', { timeout: 180_000 }, () => {
  let sink: CaptureBackend;
  let postfix: PostfixInstance;
  let lb: TestNode;
  let auth: Server;
  let httpMode: HttpMode = 'ok';
  const httpSeen: IncomingMessage['headers'][] = [];
  const port = (name: string) => lb.node.addresses.get(name)!.port;
  const server = (name: string) => `127.0.0.1:${port(name)}`;

  before(async () => {
    sink = await startCaptureBackend();
    postfix = await startPostfix({ relayTo: sink.address, saslUsers: { 'alice@example.com': PASSWORD } });
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-auth-'));
    const { key, cert } = await selfSignedCert();
    writeFileSync(join(dir, 'tls.key'), key);
    writeFileSync(join(dir, 'tls.crt'), cert);
    // What an operator does: htpasswd -B (bcrypt), here with a low cost to keep the suite quick.
    execFileSync('htpasswd', ['-cbB', '-C', '5', join(dir, 'users'), 'alice@example.com', PASSWORD]);
    execFileSync('htpasswd', ['-bB', '-C', '5', join(dir, 'users'), 'bob', 'bobs-pass']);
    auth = createServer((req: IncomingMessage, res: ServerResponse) => {
      httpSeen.push(req.headers);
      const user = decodeURIComponent(String(req.headers['auth-user']));
      const pass = decodeURIComponent(String(req.headers['auth-pass']));
      if (httpMode === 'hang') return;
      if (httpMode === 'reset') return void req.socket.destroy();
      if (httpMode === 'garbage')
        return void res.writeHead(200, { 'content-type': 'text/html' }).end('<h1>hi</h1>');
      if (user === 'alice@example.com' && pass === PASSWORD) {
        return void res.writeHead(200, { 'Auth-Status': 'OK', 'Auth-Addresses': 'Sales@Example.org' }).end();
      }
      res.writeHead(200, { 'Auth-Status': 'Invalid login or password', 'Auth-Wait': '1' }).end();
    });
    await new Promise<void>((r) => auth.listen(0, '127.0.0.1', r));
    const authPort = (auth.address() as { port: number }).port;
    const tls = `{ cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}" }`;
    lb = await startNode(`
node: { id: auth-node }
listeners:
  - name: file
    listen: 127.0.0.1:0
    hostname: submit.test
    role: submission
    tls: ${tls}
    auth: { verify: file, file: "${join(dir, 'users')}", failures: { perClient: 4, perUser: 0, window: 1m } }
  - name: implicit
    listen: 127.0.0.1:0
    hostname: submit.test
    role: submission
    tls: { cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}", implicit: true }
    auth: { verify: file, file: "${join(dir, 'users')}" }
  - name: http
    listen: 127.0.0.1:0
    hostname: submit.test
    role: submission
    auth: { verify: http, http: { url: "http://127.0.0.1:${authPort}/auth", timeout: 700ms }, allowPlaintext: true }
  - name: backend
    listen: 127.0.0.1:0
    hostname: submit.test
    role: submission
    auth: { verify: backend, allowPlaintext: true, timeout: 5s }
  - name: mx
    listen: 127.0.0.1:0
    hostname: mx.test
pools:
  relay:
    static: [{ address: ${postfix.address} }]
    tls: none
log: { level: debug }
admin: { listen: 127.0.0.1:0 }
`);
  });
  after(async () => {
    await lb?.stop();
    await new Promise((r) => auth?.close(r));
    await postfix?.stop();
    await sink?.close();
  });

  const swaks = (name: string, extra: string[], from = 'alice@example.com') =>
    runSwaks({ server: server(name), from, to: 'rcpt@example.net', extraArgs: extra, timeoutMs: 30_000 });
  const as = (mech: string, user: string, pass: string) => [
    '--auth',
    mech,
    '--auth-user',
    user,
    '--auth-password',
    pass,
  ];

  test('STARTTLS + AUTH PLAIN (file): 235, delivered, Postfix logs sasl_username of the user', async () => {
    const res = await swaks('file', ['--tls', ...as('PLAIN', 'alice@example.com', PASSWORD)]);
    assert.match(res.stdout, /^<~ +235 2\.7\.0 Authentication successful/m);
    const final = finalDataReply(res.transcript);
    assert.equal(final?.code, 250, res.stdout);
    const id = /queued as ([0-9A-Za-z]+)/.exec(final!.text)?.[1];
    assert.ok(id);
    // XCLIENT LOGIN= told Postfix who the sender is; it was never given the password.
    const [line] = await postfix.waitForLog(new RegExp(`${id}: client=[^\\n]*`));
    assert.match(line, /sasl_username=alice@example\.com/);
  });

  test('AUTH LOGIN over implicit TLS (465)', async () => {
    const res = await swaks('implicit', ['--tls-on-connect', ...as('LOGIN', 'alice@example.com', PASSWORD)]);
    assert.match(res.stdout, /334 VXNlcm5hbWU6[\s\S]*334 UGFzc3dvcmQ6[\s\S]*235 2\.7\.0/);
    assert.equal(finalDataReply(res.transcript)?.code, 250, res.stdout);
  });

  test('no AUTH without TLS (538), MAIL before AUTH (530), a wrong password (535), AUTH never on inbound', async () => {
    const d = await SmtpDialog.open(port('file'));
    await d.read();
    d.write('EHLO c.test\r\n');
    assert.doesNotMatch((await d.read()).raw, /AUTH/);
    d.write(`AUTH PLAIN ${b64(`\0alice@example.com\0${PASSWORD}`)}\r\n`);
    assert.equal(
      (await d.read()).raw,
      '538 5.7.11 Encryption required for requested authentication mechanism\r\n',
    );
    d.write('MAIL FROM:<alice@example.com>\r\n');
    assert.equal((await d.read()).raw, '530 5.7.0 Authentication required\r\n');
    d.write('QUIT\r\n');
    const wrong = await swaks('file', ['--tls', ...as('PLAIN', 'bob', 'not-it')]);
    assert.match(wrong.stdout, /535 5\.7\.8 Authentication credentials invalid/);
    const mx = await SmtpDialog.open(port('mx'));
    await mx.read();
    mx.write('EHLO c.test\r\n');
    assert.doesNotMatch((await mx.read()).raw, /AUTH/);
    mx.write(`AUTH PLAIN ${b64('\0bob\0bobs-pass')}\r\n`);
    assert.equal((await mx.read()).raw, '500 5.5.1 Command not recognized\r\n');
    mx.write('QUIT\r\n');
  });

  test('nodemailer (http verifier): a sender the service listed, one of the user domain, and one not owned (553)', async () => {
    httpMode = 'ok';
    const t = nodemailer.createTransport({
      host: '127.0.0.1',
      port: port('http'),
      secure: false,
      ignoreTLS: true,
      auth: { user: 'alice@example.com', pass: PASSWORD },
    });
    try {
      for (const from of ['sales@example.org', 'other@example.com']) {
        const info = await t.sendMail({ from, to: 'rcpt@example.net', subject: 'hi', text: 'hello' });
        assert.match(info.response, /^250 /);
      }
      await assert.rejects(t.sendMail({ from: 'ceo@elsewhere.test', to: 'rcpt@example.net', text: 'x' }), {
        responseCode: 553,
        response: /553 5\.7\.1 <ceo@elsewhere\.test>: Sender address not owned by the authenticated user/,
      });
    } finally {
      t.close();
    }
    const h = httpSeen.at(-1)!;
    assert.equal(h['auth-protocol'], 'smtp');
    assert.equal(h['auth-method'], 'plain');
    assert.equal(h['client-ip'], '127.0.0.1');
    assert.equal(h['auth-listener'], 'http');
  });

  test('an auth service that hangs, answers garbage or resets: 454 4.7.0, and the node serves others', async () => {
    for (const mode of ['hang', 'garbage', 'reset'] as const) {
      httpMode = mode;
      const d = await SmtpDialog.open(port('http'));
      await d.read();
      d.write('EHLO c.test\r\n');
      await d.read();
      d.write(`AUTH PLAIN ${b64(`\0alice@example.com\0${PASSWORD}-${mode}`)}\r\n`);
      assert.equal(
        (await d.read(5000)).raw,
        '454 4.7.0 Temporary authentication failure, try again later\r\n',
        mode,
      );
      d.write('QUIT\r\n');
      // Meanwhile a session on another listener is served as usual.
      const other = await swaks('file', ['--tls', ...as('PLAIN', 'alice@example.com', PASSWORD)]);
      assert.equal(finalDataReply(other.transcript)?.code, 250, other.stdout);
    }
    httpMode = 'ok';
    const bad = lb.logs.filter((l) => l.msg === 'AUTH verifier failed');
    assert.equal(bad.length, 3);
  });

  test('verify: backend: Dovecot behind Postfix checks the password; the same connection carries the mail', async () => {
    const res = await swaks('backend', as('PLAIN', 'alice@example.com', PASSWORD));
    assert.match(res.stdout, /235 2\.7\.0 Authentication successful/);
    const final = finalDataReply(res.transcript);
    assert.equal(final?.code, 250, res.stdout);
    const id = /queued as ([0-9A-Za-z]+)/.exec(final!.text)?.[1];
    const [line] = await postfix.waitForLog(new RegExp(`${id}: client=[^\\n]*`));
    assert.match(line, /client=unknown\[127\.0\.0\.1\]/);
    assert.match(line, /sasl_method=PLAIN, sasl_username=alice@example\.com/);
    const wrong = await swaks('backend', as('LOGIN', 'alice@example.com', 'nope'));
    assert.match(wrong.stdout, /535 5\.7\.8 Authentication credentials invalid/);
  });

  test('brute force: after perClient failures the client gets 421 4.7.0 before its password is checked', async () => {
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await swaks('file', ['--tls', ...as('PLAIN', `guess${i}`, 'x')]);
      outcomes.push(/535 5\.7\.8/.test(r.stdout) ? '535' : /421 4\.7\.0/.test(r.stdout) ? '421' : r.stdout);
    }
    // Failures so far in this suite from this client: one before, then these until the cap of 4.
    assert.deepEqual(outcomes, ['535', '535', '535', '421', '421']);
    const last = await swaks('file', ['--tls', ...as('PLAIN', 'alice@example.com', PASSWORD)]);
    assert.match(last.stdout, /421 4\.7\.0 Too many failed authentications/);
    assert.ok(lb.logs.some((l) => l.msg === 'AUTH refused: too many failed attempts'));
  });

  test('no password and no AUTH payload in any log line of the suite', async () => {
    const text = JSON.stringify(lb.logs);
    for (const secret of [PASSWORD, 'bobs-pass', b64(`\0alice@example.com\0${PASSWORD}`), b64(PASSWORD)]) {
      assert.equal(text.includes(secret), false, `found ${secret} in the logs`);
    }
    assert.ok(lb.logs.some((l) => l.msg === 'authenticated' && l.user === 'alice@example.com'));
    const metrics = await (await fetch(`http://127.0.0.1:${lb.node.adminAddress!.port}/metrics`)).text();
    assert.match(metrics, /smtp_lb_auth_attempts_total\{listener="file",result="ok"\} [1-9]/);
    assert.match(metrics, /smtp_lb_auth_attempts_total\{listener="http",result="error"\} 3/);
    assert.equal(metrics.includes(PASSWORD), false);
  });
});
