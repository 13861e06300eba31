// The AUTH verifiers on their own: the htpasswd file (written by the real `htpasswd -B`) with its
// re-read on change and on reload, a file that turns unreadable, weak hash lines skipped; the
// deadline around any verifier (hang, throw); the success cache; and the HTTP service's answer
// parser and the htpasswd parser by property (any input gives a result, never a throw).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FileVerifier, parseHtpasswd } from '../src/auth/file-verifier.js';
import { answerOf, requestHeaders } from '../src/auth/http-verifier.js';
import { type AuthRequest, SuccessCache, type Verifier, verifyWithin } from '../src/auth/verifier.js';
import { createLogger } from '../src/logger.js';

const T = { timeout: 20_000 };
const params = { seed: 1313, numRuns: 1000 };

function logSink(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

const req = (user: string, password: string): AuthRequest => ({
  user,
  password,
  clientAddress: '192.0.2.1',
  clientPort: 40000,
  helo: 'client.example',
  listener: 'submission',
  mechanism: 'PLAIN',
  attempt: 0,
  sid: 'test',
});

async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within 5 s: ${what}`);
}

describe('FileVerifier', () => {
  test('bcrypt lines from htpasswd -B; a changed file is re-read; weak hashes are skipped', T, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-htpasswd-'));
    const file = join(dir, 'users');
    execFileSync('htpasswd', ['-cbB', '-C', '4', file, 'alice@example.com', 'pw-alice']);
    execFileSync('htpasswd', ['-bm', file, 'md5user', 'pw-md5']);
    const { log, lines } = logSink();
    const v = new FileVerifier(file, log);
    try {
      assert.deepEqual(await v.verify(req('alice@example.com', 'pw-alice')), {
        kind: 'ok',
        user: 'alice@example.com',
      });
      assert.deepEqual(await v.verify(req('alice@example.com', 'pw-wrong')), { kind: 'fail' });
      assert.deepEqual(await v.verify(req('nobody', 'pw-alice')), { kind: 'fail' });
      assert.deepEqual(await v.verify(req('md5user', 'pw-md5')), { kind: 'fail' }, 'MD5 lines are not used');
      assert.ok(lines.some((l) => l.msg === 'auth file line skipped' && l.line === 2));
      // htpasswd rewrites the file: the watcher reads it again.
      execFileSync('htpasswd', ['-bB', '-C', '4', file, 'bob', 'pw-bob']);
      await until('bob is known', async () => (await v.verify(req('bob', 'pw-bob'))).kind === 'ok');
      // A file that disappears keeps the users read before (and says so); SIGHUP reads it again.
      rmSync(file);
      v.reload();
      assert.ok(lines.some((l) => l.msg === 'auth file unreadable; keeping the users read before'));
      assert.equal((await v.verify(req('bob', 'pw-bob'))).kind, 'ok');
      execFileSync('htpasswd', ['-cbB', '-C', '4', file, 'carol', 'pw-carol']);
      v.reload();
      assert.equal((await v.verify(req('carol', 'pw-carol'))).kind, 'ok');
      assert.equal((await v.verify(req('bob', 'pw-bob'))).kind, 'fail', 'bob left with the old file');
    } finally {
      v.close();
    }
  });

  test('parseHtpasswd: any text gives users and skipped lines, never a throw', T, () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (text) => {
        const p = parseHtpasswd(text);
        for (const [user, hash] of p.users) {
          assert.ok(user.length > 0 && !user.includes(':'));
          assert.match(hash, /^\$2[aby]\$/);
        }
      }),
      params,
    );
  });
});

describe('verifyWithin and the success cache', () => {
  test('a verifier that hangs or throws is an error, never a success', T, async () => {
    const hang: Verifier = { name: 'hang', verify: () => new Promise(() => {}), close() {} };
    const started = Date.now();
    assert.deepEqual(await verifyWithin(hang, req('a', 'b'), 100), {
      kind: 'error',
      reason: 'no answer within 100 ms',
    });
    assert.ok(Date.now() - started < 2000);
    const boom: Verifier = {
      name: 'boom',
      verify: async () => {
        throw new Error('socket hang up');
      },
      close() {},
    };
    assert.deepEqual(await verifyWithin(boom, req('a', 'b'), 1000), {
      kind: 'error',
      reason: 'socket hang up',
    });
  });

  test('successes are remembered for the ttl, failures never; ttl 0 is off', T, () => {
    let now = 1000;
    const c = new SuccessCache(500, () => now);
    c.set('u', 'p', { kind: 'ok', user: 'u' });
    c.set('v', 'p', { kind: 'fail' });
    assert.deepEqual(c.get('u', 'p'), { kind: 'ok', user: 'u' });
    assert.equal(c.get('u', 'other'), undefined, 'another password is not the cached one');
    assert.equal(c.get('v', 'p'), undefined);
    now += 600;
    assert.equal(c.get('u', 'p'), undefined, 'expired');
    const off = new SuccessCache(0);
    off.set('u', 'p', { kind: 'ok', user: 'u' });
    assert.equal(off.get('u', 'p'), undefined);
  });
});

describe('the HTTP auth service (nginx auth_http)', () => {
  test('request headers carry the credentials percent-encoded, and the client', T, () => {
    const h = requestHeaders({ ...req('ä user@example.com', 'p:a ss%'), mechanism: 'LOGIN', attempt: 2 });
    assert.deepEqual(h, {
      'Auth-Method': 'login',
      'Auth-User': '%C3%A4%20user%40example.com',
      'Auth-Pass': 'p%3Aa%20ss%25',
      'Auth-Protocol': 'smtp',
      'Auth-Login-Attempt': '3',
      'Auth-SMTP-Helo': 'client.example',
      'Auth-Listener': 'submission',
      'Client-IP': '192.0.2.1',
      'Client-Port': '40000',
    });
  });

  test('answers: OK with addresses, a refusal with a wait, anything else an error', T, () => {
    const h = (m: Record<string, string>) => (n: string) => m[n] ?? null;
    assert.deepEqual(answerOf(200, h({ 'auth-status': 'OK', 'auth-addresses': 'A@x.test, b@y.test' }), 'u'), {
      kind: 'ok',
      user: 'u',
      addresses: ['a@x.test', 'b@y.test'],
    });
    assert.deepEqual(answerOf(200, h({ 'auth-status': 'OK', 'auth-user': 'canon%40x.test' }), 'u'), {
      kind: 'ok',
      user: 'canon@x.test',
    });
    assert.deepEqual(answerOf(200, h({ 'auth-status': 'Invalid login', 'auth-wait': '3' }), 'u'), {
      kind: 'fail',
      waitMs: 3000,
    });
    assert.equal(answerOf(500, h({ 'auth-status': 'OK' }), 'u').kind, 'error');
    assert.equal(answerOf(200, h({}), 'u').kind, 'error');
    assert.equal(answerOf(200, h({ 'auth-status': 'OK', 'auth-user': '%E0%A4%A' }), 'u').kind, 'error');
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.dictionary(
          fc.constantFrom('auth-status', 'auth-user', 'auth-addresses', 'auth-wait'),
          fc.string({ maxLength: 40 }),
        ),
        (status, headers) => {
          const r = answerOf(status, h(headers), 'u');
          assert.ok(['ok', 'fail', 'error'].includes(r.kind));
          if (r.kind === 'ok')
            assert.ok(status === 200 && headers['auth-status']?.trim().toUpperCase() === 'OK');
          if (r.kind === 'fail' && r.waitMs !== undefined) assert.ok(r.waitMs > 0 && r.waitMs <= 60_000);
        },
      ),
      params,
    );
  });
});
