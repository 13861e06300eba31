// A 30 MB message scanned by a real rspamd and relayed by a node run as its own process: the node's
// memory does not grow with the message (the content streams to rspamd and to the backend with
// backpressure, nothing holds the whole message), and the backend gets it byte for byte.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { freePort, startCaptureBackend, startRspamd } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { rssKiB, spawnConfigNode } from '../helpers/cli-node.js';
import { simpleConfig } from '../helpers/node.js';

const cleanup = cleanupAfterAll();

describe('a scanned 30 MB message', { timeout: 300_000 }, () => {
  test('is relayed byte for byte with the node RSS flat while rspamd reads it', async (t) => {
    const [rspamd, backend] = await Promise.all([
      startRspamd(),
      startCaptureBackend({ capabilities: ['PIPELINING', '8BITMIME', 'SIZE 209715200'] }),
    ]);
    cleanup.push(() => rspamd.stop());
    cleanup.push(() => backend.close());
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-scan-mem-'));
    const cfg = join(dir, 'node.yaml');
    writeFileSync(
      cfg,
      simpleConfig([backend.address], {
        extraListener: '    maxMessageSize: 100MB\n    scan: spam\n',
        extraTop: `scanners:\n  spam: { rspamd: { url: "${rspamd.url}" }, timeout: 120s, maxSize: 60MB, onError: defer }\n`,
      })
        .replace('127.0.0.1:0', `127.0.0.1:${port}`)
        .replace('log: { level: debug }', 'log: { level: info }'),
    );
    const { child, output, dialog: c } = await spawnConfigNode(cfg, port, cleanup);
    await c.read();
    await c.cmd('EHLO big.example.org');
    const head =
      'From: Big Sender <big@example.org>\r\nTo: <b@example.test>\r\nSubject: a big one\r\n' +
      'Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <big-1@example.org>\r\n\r\n';
    const line = `${'0123456789abcdef'.repeat(6)}\r\n`; // 98 bytes
    const chunk = Buffer.from(line.repeat(10_000)); // ~1 MB
    const send = async (mib: number) => {
      await c.cmd('MAIL FROM:<big@example.org>');
      assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
      assert.equal((await c.cmd('DATA')).code, 354);
      c.write(head);
      const chunks = Math.ceil((mib * 1024 * 1024) / chunk.length);
      for (let i = 0; i < chunks; i++) {
        c.write(chunk);
        if (i % 4 === 3) await new Promise((r) => setTimeout(r, 5));
      }
      const reply = await c.cmd('.', 240_000);
      assert.equal(reply.code, 250, `${reply.raw}\n${output().slice(-2000)}`);
      return chunks;
    };
    // A warm-up message first (the heap grows to its working size on the first stream), then a 10 MB
    // and a 30 MB one, each measured from the same baseline: V8's young generation makes a growth of
    // tens of MiB whatever the size, a copy of the message would add its size on top.
    await send(5);
    const baseline = rssKiB(child.pid!);
    const peakDuring = async (mib: number) => {
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssKiB(child.pid!));
      }, 50);
      try {
        return { chunks: await send(mib), growthMiB: (peak - baseline) / 1024 };
      } finally {
        clearInterval(sampler);
      }
    };
    const small = await peakDuring(10);
    const big = await peakDuring(30);
    const [, , msg] = await backend.waitForMessages(3, 30_000);
    assert.equal(msg!.data.length, Buffer.byteLength(head) + chunk.length * big.chunks);
    t.diagnostic(
      `node RSS ${(baseline / 1024).toFixed(1)} MiB after the warm-up; at most +${small.growthMiB.toFixed(1)} MiB during 10 MB, +${big.growthMiB.toFixed(1)} MiB during 30 MB`,
    );
    assert.ok(
      big.growthMiB - small.growthMiB < 12,
      `30 MB grew the node by ${big.growthMiB.toFixed(1)} MiB, 10 MB by ${small.growthMiB.toFixed(1)} MiB`,
    );
    assert.ok(
      big.growthMiB < 60,
      `node RSS grew by ${big.growthMiB.toFixed(1)} MiB for a 30 MB scanned message`,
    );
    // rspamd did read it: its verdict is in the node's log line.
    const scanned = output()
      .split('\n')
      .filter((l) => l.includes('"message scanned"') && l.includes('"action":"accept"'));
    assert.equal(scanned.length, 3, output().slice(-2000));
    assert.match(await rspamd.log(), /len: 3\d{7},/);
    c.close();
  });
});
