// TLS through the front door: on an implicit TLS listener (port 465 style) the PROXY header comes
// first in plaintext, then the handshake, then the greeting delay inside TLS; on a STARTTLS
// listener a tarpitted session can still upgrade (the tarpit wraps the socket under TLS) and
// deliver, only slowly.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  finalDataReply,
  runSwaks,
  selfSignedCert,
  startCaptureBackend,
} from '@smtp-lb/testkit';
import type { TestNode } from '../helpers/node.js';
import { fromClient, startShapingNode, waitForLog } from './shaping-helpers.js';

describe('shaping with TLS', { timeout: 60_000 }, () => {
  let backend: CaptureBackend;
  let tlsYaml: string;
  const nodes: TestNode[] = [];
  before(async () => {
    backend = await startCaptureBackend();
    const { key, cert } = await selfSignedCert();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-shaping-tls-'));
    writeFileSync(join(dir, 'tls.key'), key);
    writeFileSync(join(dir, 'tls.crt'), cert);
    tlsYaml = `cert: "${join(dir, 'tls.crt')}", key: "${join(dir, 'tls.key')}"`;
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    await backend?.close();
  });

  test('implicit TLS behind a balancer: PROXY v1, then the handshake, then the greeting delay', async () => {
    const lb = await startShapingNode({
      backend: backend.address,
      listener: `    tls: { ${tlsYaml}, implicit: true }
    proxyProtocol: { trusted: [127.0.0.2] }`,
      shaping: '  greeting: { delay: 200ms }\n',
    });
    nodes.push(lb);
    const res = await runSwaks({
      server: `127.0.0.1:${lb.port}`,
      from: 'a@example.org',
      to: 'b@example.test',
      extraArgs: [
        '--tls-on-connect',
        '--local-interface',
        '127.0.0.2',
        '--proxy-version',
        '1',
        '--proxy-family',
        'TCP4',
        '--proxy-source',
        '198.51.100.20',
        '--proxy-source-port',
        '40020',
        '--proxy-dest',
        '127.0.0.1',
        '--proxy-dest-port',
        String(lb.port),
      ],
      timeoutMs: 30_000,
    });
    assert.equal(finalDataReply(res.transcript)?.code, 250, `${res.stdout}\n${res.errors.join('\n')}`);
    assert.match(res.stdout, /=== TLS started with cipher/);
    await waitForLog(lb, 'session opened', (l) => l.client === '198.51.100.20:40020');
    assert.ok(backend.sessions.some((s) => s.xclient.ADDR === '198.51.100.20'));
  });

  test('a tarpitted session upgrades with STARTTLS and delivers, slowly', async () => {
    const lb = await startShapingNode({
      backend: backend.address,
      listener: `    tls: { ${tlsYaml} }`,
      shaping: `  limits: { connectionRate: { limit: 1, window: 1h }, action: tarpit }
  tarpit: { delay: 300ms }
`,
    });
    nodes.push(lb);
    const run = () =>
      runSwaks({
        server: `127.0.0.1:${lb.port}`,
        from: 'a@example.org',
        to: 'b@example.test',
        extraArgs: ['--tls', '--local-interface', '127.0.0.3'],
        timeoutMs: 40_000,
      });
    const t0 = Date.now();
    const fast = await run();
    const tFast = Date.now() - t0;
    assert.equal(finalDataReply(fast.transcript)?.code, 250, fast.stdout);
    const t1 = Date.now();
    const slow = await run();
    const tSlow = Date.now() - t1;
    assert.equal(finalDataReply(slow.transcript)?.code, 250, `${slow.stdout}\n${slow.errors.join('\n')}`);
    assert.match(slow.stdout, /=== TLS started with cipher/);
    const line = await waitForLog(lb, 'session tarpitted', fromClient('127.0.0.3'));
    assert.equal(line.reason, 'connection-rate');
    // Greeting, EHLO, STARTTLS, the handshake, EHLO, MAIL, RCPT, DATA, the message, QUIT: all held.
    assert.ok(tSlow >= tFast + 8 * 300, `tarpitted ${tSlow} ms vs ${tFast} ms`);
  });
});
