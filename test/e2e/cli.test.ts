// The `smtp-lb` command as an operator runs it: check-config answers with every error by path and
// exit 1; a node started from a file relays mail; a 50 MB message streams with flat memory.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { freePort, startCaptureBackend } from '@smtp-lb/testkit';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { rssKiB, spawnConfigNode } from '../helpers/cli-node.js';
import { simpleConfig } from '../helpers/node.js';
import type { SmtpDialog } from '../helpers/smtp-dialog.js';

const CLI = resolve(import.meta.dirname, '../../../packages/proxy/dist/src/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-cli-'));
const cleanup = cleanupAfterAll();

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('smtp-lb check-config', () => {
  test('a good file exits 0', () => {
    const r = spawnSync(
      process.execPath,
      [CLI, 'check-config', resolve(import.meta.dirname, '../../../examples/smtp-lb.yaml')],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr + r.stdout);
  });

  test('`npx smtp-lb` at the repository root runs the same command (npm links the bin at npm ci)', () => {
    const root = resolve(import.meta.dirname, '../../..');
    // --no: never ask the registry for a package of that name; the workspace's bin must be found.
    const r = spawnSync('npx', ['--no', 'smtp-lb', 'check-config', 'examples/smtp-lb.yaml'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^examples\/smtp-lb\.yaml: OK /m);
  });

  test('a bad file prints every error with its path and exits 1', () => {
    const bad = file(
      'bad.yaml',
      `listeners:
  - name: in
    listen: 127.0.0.1:2525
    pool: nowhere
    bareNewlines: sometimes
pools:
  default:
    static:
      - { address: 10.1.0.5:25 }
      - { address: not-an-address }
    colour: blue
admission: { queueTimeout: soon }
`,
    );
    const r = spawnSync(process.execPath, [CLI, 'check-config', bad], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    const out = r.stdout + r.stderr;
    for (const path of [
      'pools.default.static[1].address',
      'pools.default.colour',
      'listeners[0].pool',
      'listeners[0].bareNewlines',
      'admission.queueTimeout',
    ]) {
      assert.ok(out.includes(path), `${path} in:\n${out}`);
    }
  });

  test('running a node on a bad file exits 1 with the errors', () => {
    const bad = file('bad2.yaml', 'listeners: []\npools: {}\nfoo: 1\n');
    const r = spawnSync(process.execPath, [CLI, '--config', bad], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.match(r.stdout + r.stderr, /foo/);
  });
});

describe('a node run from the command line', { timeout: 180_000 }, () => {
  test('streams a 150 MB message with flat memory, byte for byte', async (t) => {
    const backend = await startCaptureBackend({ size: 262_144_000 });
    cleanup.push(() => backend.close());
    const port = await freePort();
    const cfg = file(
      'node.yaml',
      simpleConfig([backend.address])
        .replace('127.0.0.1:0', `127.0.0.1:${port}`)
        .replace('log: { level: debug }', 'log: { level: warn }')
        .replace('    pool: default', '    pool: default\n    maxMessageSize: 200MB'),
    );
    const { child, dialog: c } = await spawnConfigNode(cfg, port, cleanup);
    await c.read();
    await c.cmd('EHLO big.test');
    const line = `${'0123456789abcdef'.repeat(6)}\r\n`; // 98 bytes
    const chunk = Buffer.from(line.repeat(10_000)); // ~1 MB
    const send = async (dialog: SmtpDialog, mib: number) => {
      await dialog.cmd('MAIL FROM:<big@example.org>');
      assert.equal((await dialog.cmd('RCPT TO:<b@example.test>')).code, 250);
      assert.equal((await dialog.cmd('DATA')).code, 354);
      const chunks = Math.ceil((mib * 1024 * 1024) / chunk.length);
      for (let i = 0; i < chunks; i++) {
        dialog.write(chunk);
        // Pace the writer a little so the test process does not buffer the whole message itself.
        if (i % 4 === 3) await new Promise((r) => setTimeout(r, 5));
      }
      const reply = await dialog.cmd('.', 120_000);
      assert.equal(reply.code, 250, reply.raw);
      return chunks;
    };
    // A 5 MB message first: the node's heap grows to its working size while streaming at full speed
    // (V8's young generation on Node 24 grows to tens of MiB), whatever the message's size. What must
    // not happen is growth with the size: the 150 MB message after it is measured from there. Socket
    // reads are Buffers outside the V8 heap, collected only after external memory grew by 64 MiB, so
    // RSS rises by up to ~64 MiB plus heap growth whatever the size: a message well above that tells
    // a copy (+150 MiB or more) from collection lag.
    await send(c, 5);
    const baseline = rssKiB(child.pid!);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKiB(child.pid!));
    }, 50);
    const chunks = await send(c, 150);
    clearInterval(sampler);
    const [, msg] = await backend.waitForMessages(2, 30_000);
    assert.equal(msg!.data.length, chunk.length * chunks);
    assert.ok(msg!.data.subarray(0, chunk.length).equals(chunk));
    const growthMiB = (peak - baseline) / 1024;
    t.diagnostic(
      `node RSS ${(baseline / 1024).toFixed(1)} MiB after the warm-up, at most +${growthMiB.toFixed(1)} MiB during 150 MB`,
    );
    assert.ok(growthMiB < 100, `node RSS grew by ${growthMiB.toFixed(1)} MiB for a 150 MB message`);
    c.close();
  });
});
