// smtp-sink starts on a free port, takes messages (from swaks, and relayed by a private Postfix), and
// frees its port on stop().
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { finalDataReply, runSwaks, startPostfix, startSmtpSink } from '../src/index.js';

describe('startSmtpSink', { timeout: 30_000 }, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    await Promise.all(cleanups.map((c) => c()));
  });

  test('accepts a message from swaks and stops', async () => {
    const sink = await startSmtpSink();
    cleanups.push(() => sink.stop());
    const r = await runSwaks({
      server: sink.address,
      from: 'a@example.org',
      to: 'b@example.test',
      body: 'x',
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(finalDataReply(r.transcript)?.code, 250);
    await sink.stop();
    const again = await runSwaks({ server: sink.address, from: 'a@example.org', to: 'b@example.test' });
    assert.match(again.errors.join('\n'), /Connection refused/);
  });

  test('is a relay target for a private Postfix', async () => {
    const sink = await startSmtpSink();
    cleanups.push(() => sink.stop());
    const pf = await startPostfix({ relayTo: sink.address });
    cleanups.push(() => pf.stop());
    const r = await runSwaks({ server: pf.address, from: 'a@example.org', to: 'b@example.test', body: 'x' });
    const id = /queued as ([0-9A-F]+)/.exec(finalDataReply(r.transcript)?.text ?? '')?.[1];
    assert.ok(id, r.stdout);
    await pf.waitForLog(
      new RegExp(`${id}: to=<b@example.test>, relay=127.0.0.1\\[127.0.0.1\\]:${sink.port}.*status=sent`),
    );
  });
});
