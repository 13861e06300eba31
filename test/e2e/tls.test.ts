// TLS on both sides: STARTTLS offered to clients when the listener has a certificate, and the pool's
// `tls` mode towards backends (required: no STARTTLS means no session, never plaintext).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { finalDataReply, runSwaks, selfSignedCert, startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode } from '../helpers/node.js';

const cleanup = cleanupAfterAll();

describe('TLS', { timeout: 60_000 }, () => {
  test('a listener with a certificate offers STARTTLS and relays over it', async () => {
    const { key, cert } = await selfSignedCert();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-tls-'));
    writeFileSync(join(dir, 'tls.key'), key);
    writeFileSync(join(dir, 'tls.crt'), cert);
    const backend = await startCaptureBackend();
    const lb = await startNode(
      simpleConfig([backend.address], {
        extraListener: `    tls: { cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}" }`,
      }),
    );
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const res = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'tls@example.org',
      to: 'b@example.test',
      extraArgs: ['--tls'],
      timeoutMs: 30_000,
    });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /<- +250-STARTTLS/);
    assert.match(res.stdout, /=== TLS started with cipher/);
    assert.equal(finalDataReply(res.transcript)?.code, 250);
    assert.equal(backend.messages.length, 1);
  });

  test('pool tls: required uses STARTTLS towards the backend; a backend without it gets no session', async () => {
    const { key, cert } = await selfSignedCert();
    const secure = await startCaptureBackend({ tls: { key, cert } });
    const plain = await startCaptureBackend();
    const requiredPool = (addr: string) =>
      simpleConfig([addr]).replace('    tls: none', '    tls: { mode: required, verify: false }');
    const good = await startNode(requiredPool(secure.address));
    const bad = await startNode(requiredPool(plain.address));
    cleanup.push(
      () => good.stop(),
      () => bad.stop(),
      () => secure.close(),
      () => plain.close(),
    );
    const ok = await runSwaks({
      server: `127.0.0.1:${good.port}`,
      from: 'a@example.org',
      to: 'b@example.test',
      timeoutMs: 30_000,
    });
    assert.equal(finalDataReply(ok.transcript)?.code, 250, ok.stdout);
    assert.equal(secure.sessions[0]!.tls, true, 'the backend session ran over TLS');
    assert.equal(secure.messages.length, 1);

    const refused = await runSwaks({
      server: `127.0.0.1:${bad.port}`,
      from: 'a@example.org',
      to: 'b@example.test',
      timeoutMs: 30_000,
    });
    const rcpt = refused.transcript.find((x) => x.verb === 'RCPT')?.reply;
    assert.equal(rcpt?.code, 451, refused.stdout);
    assert.equal(plain.messages.length, 0);
    assert.ok(
      !plain.sessions.some((s) => s.lines.some((l) => /^MAIL/i.test(l))),
      'nothing was sent in plaintext',
    );
  });
});
