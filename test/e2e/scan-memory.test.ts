// A 120 MB message scanned by a real rspamd and relayed by a node run as its own process: the node's
// memory does not grow with the message (the content streams to rspamd and to the backend with
// backpressure, nothing holds the whole message), and the backend gets it byte for byte.
//
// Why 120 MB: the socket reads are Buffers outside the V8 heap, and V8 collects them only once
// external memory has grown by its limit (64 MiB) since the last collection, so RSS rises by up to
// ~64 MiB plus heap growth whatever the message size (23-60 MiB seen for 30 and 45 MB messages). A
// message well above that tells a copy (RSS +120 MiB or more) from collection lag (under 100 MiB).
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

describe('a scanned 120 MB message', { timeout: 300_000 }, () => {
  test('is relayed byte for byte with the node RSS flat while rspamd reads it', async (t) => {
    const [rspamd, backend] = await Promise.all([
      startRspamd({ maxMessage: '200Mb', taskTimeout: '120s' }),
      startCaptureBackend({ size: 262_144_000 }),
    ]);
    cleanup.push(() => rspamd.stop());
    cleanup.push(() => backend.close());
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-scan-mem-'));
    const cfg = join(dir, 'node.yaml');
    writeFileSync(
      cfg,
      simpleConfig([backend.address], {
        extraListener: '    maxMessageSize: 200MB\n    scan: spam\n',
        extraTop: `scanners:\n  spam: { rspamd: { url: "${rspamd.url}" }, timeout: 180s, maxSize: 200MB, onError: defer }\n`,
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
      const reply = await c.cmd('.', 280_000);
      assert.equal(reply.code, 250, `${reply.raw}\n${output().slice(-2000)}`);
      return chunks;
    };
    // A warm-up message first (the heap grows to its working size on the first stream), then a 30 MB
    // and a 120 MB one, each measured from the same baseline.
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
    const mid = await peakDuring(30);
    const big = await peakDuring(120);
    const [, m30, m45] = await backend.waitForMessages(3, 30_000);
    assert.equal(m30!.data.length, Buffer.byteLength(head) + chunk.length * mid.chunks);
    assert.equal(m45!.data.length, Buffer.byteLength(head) + chunk.length * big.chunks);
    t.diagnostic(
      `node RSS ${(baseline / 1024).toFixed(1)} MiB after the warm-up; at most +${mid.growthMiB.toFixed(1)} MiB during 30 MB, +${big.growthMiB.toFixed(1)} MiB during 120 MB`,
    );
    for (const [size, g] of [
      [30, mid.growthMiB],
      [120, big.growthMiB],
    ] as const) {
      assert.ok(g < 100, `node RSS grew by ${g.toFixed(1)} MiB for a ${size} MB scanned message`);
    }
    // rspamd did read it: its verdict is in the node's log line.
    const scanned = output()
      .split('\n')
      .filter((l) => l.includes('"message scanned"') && l.includes('"action":"accept"'));
    assert.equal(scanned.length, 3, output().slice(-2000));
    assert.match(await rspamd.log(), /len: 3\d{7},/);
    assert.match(await rspamd.log(), /len: 12\d{7},/);
    c.close();
  });
});
