// Reply-aware health with two real Postfix backends, one told to defer every recipient
// (smtpd_recipient_restrictions = defer: 450 4.7.1 at RCPT): once it has deferred its share, the node
// ejects it, new sessions go to the healthy one (the messages arrive there, the deferring one sees no
// RCPT while ejected), /status, `smtp-lb status` and /metrics say so; after the ejection time it gets
// sessions again and, deferring still, is ejected again for twice as long.
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NodeStatus } from '@smtp-lb/proxy';
import {
  type CaptureBackend,
  type PostfixInstance,
  pollUntil,
  runCommand,
  startCaptureBackend,
  startPostfix,
} from '@smtp-lb/testkit';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const CLI = resolve(import.meta.dirname, '../../../packages/proxy/dist/src/cli.js');
/** Long enough that the checks made during an ejection end well inside it on a loaded machine. */
const BASE_EJECTION_S = 20;

describe('outlier detection: a backend that defers everything is ejected', { timeout: 240_000 }, () => {
  let sink: CaptureBackend;
  let good: PostfixInstance;
  let bad: PostfixInstance;
  let lb: TestNode;
  let admin: string;
  let sent = 0;

  before(async () => {
    sink = await startCaptureBackend();
    [good, bad] = await Promise.all([
      startPostfix({ relayTo: sink.address }),
      startPostfix({ relayTo: sink.address, mainCf: { smtpd_recipient_restrictions: 'defer' } }),
    ]);
    lb = await startNode(
      simpleConfig([bad.address, good.address], {
        extraPool: `    outlierDetection: { minimumVolume: 3, baseEjectionTime: ${BASE_EJECTION_S}s }`,
      }),
    );
    const a = lb.node.adminAddress!;
    admin = `http://${a.host}:${a.port}`;
  });
  after(async () => {
    await lb?.stop();
    await Promise.all([good?.stop(), bad?.stop()]);
    await sink?.close();
  });

  /** One session, one message: the RCPT reply, and the final reply when RCPT was accepted. */
  async function send(): Promise<{ rcpt: number; data?: number; to: string }> {
    const to = `rcpt${++sent}@example.test`;
    const c = await SmtpDialog.open(lb.port);
    try {
      await c.read();
      await c.cmd('EHLO client.example.org');
      await c.cmd('MAIL FROM:<alice@example.org>');
      const rcpt = (await c.cmd(`RCPT TO:<${to}>`)).code;
      if (rcpt !== 250) return { rcpt, to };
      await c.cmd('DATA');
      const data = (await c.cmd(`Subject: ${to}\r\n\r\nhello\r\n.`)).code;
      return { rcpt, data, to };
    } finally {
      await c.cmd('QUIT').catch(() => undefined);
      c.close();
    }
  }

  async function status(): Promise<NodeStatus> {
    return (await (await fetch(`${admin}/status`)).json()) as NodeStatus;
  }

  async function badStatus() {
    return (await status()).pools[0]!.backends.find((b) => b.id === bad.address)!;
  }

  /** RCPTs the deferring Postfix has answered (each is logged as a NOQUEUE reject). */
  async function rcptsAtBad(): Promise<number> {
    return ((await bad.log()).match(/NOQUEUE: reject: RCPT/g) ?? []).length;
  }

  /** Sends sessions one by one until `done`; at most `max` of them. */
  async function sendUntil(done: () => Promise<boolean>, max: number): Promise<number> {
    for (let n = 1; n <= max; n++) {
      const r = await send();
      assert.ok(r.rcpt === 250 || r.rcpt === 450, `RCPT ${r.rcpt}`);
      if (await done()) return n;
    }
    assert.fail(`not done after ${max} sessions`);
  }

  test('after its share of deferrals new sessions go to the healthy one; /status, smtp-lb status and metrics show it', async () => {
    await sendUntil(async () => (await badStatus()).health === 'ejected', 80);
    const ejected = await badStatus();
    assert.equal(ejected.outlier?.reason, 'deferrals');
    assert.equal(ejected.outlier?.ejections, 1);
    assert.ok(ejected.outlier!.ejectedForMs! > 0);
    assert.ok(
      lb.logs.some((l) => l.msg === 'backend ejected by outlier detection' && l.backend === bad.address),
    );

    // Postfix writes its log a moment later: wait until the count holds still.
    let before = -1;
    await pollUntil(
      "the deferring Postfix's log to settle",
      async () => {
        const n = await rcptsAtBad();
        const still = n === before;
        before = n;
        return still ? true : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 500 },
    );
    const delivered = sink.messages.length;
    const sentNow: string[] = [];
    for (let k = 0; k < 8; k++) {
      const r = await send();
      assert.deepEqual([r.rcpt, r.data], [250, 250], `message ${r.to} through the healthy backend`);
      sentNow.push(r.to);
    }
    const msgs = (await sink.waitForMessages(delivered + 8, 30_000)).slice(delivered);
    assert.deepEqual(msgs.flatMap((m) => m.rcptTo).sort(), sentNow.sort());
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await rcptsAtBad(), before, 'the ejected backend saw no RCPT');
    assert.equal((await badStatus()).health, 'ejected', 'all of it happened during the ejection');

    const table = await runCommand(process.execPath, [CLI, 'status', '--admin', admin], {
      timeoutMs: 20_000,
    });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /DEFERRED/);
    assert.match(
      table.stdout,
      new RegExp(`default\\s+${bad.address.replace(/\./g, '\\.')}\\s+.*EJECTED \\d+s \\(deferrals, 1x\\)`),
    );
    assert.match(table.stdout, new RegExp(`default\\s+${good.address.replace(/\./g, '\\.')}\\s+1\\s.*ok`));

    const metrics = await (await fetch(`${admin}/metrics`)).text();
    assert.match(metrics, /^smtp_lb_backends_ejected\{pool="default"\} 1$/m);
    assert.match(
      metrics,
      new RegExp(
        `^smtp_lb_outlier_ejections_total\\{pool="default",backend="${bad.address}",reason="deferrals"\\} 1$`,
        'm',
      ),
    );
  });

  test('it gets sessions again after the ejection time and, deferring still, is ejected for twice as long', async () => {
    await pollUntil(
      'the ejection to end',
      async () => ((await badStatus()).health !== 'ejected' ? true : undefined),
      { timeoutMs: (BASE_EJECTION_S + 30) * 1000, intervalMs: 500 },
    );
    const back = await badStatus();
    assert.equal(back.outlier?.ejections, 1, 'not forgiven yet: it has not been back for a base time');
    const before = await rcptsAtBad();
    await sendUntil(async () => (await rcptsAtBad()) > before, 60);
    await sendUntil(async () => (await badStatus()).health === 'ejected', 80);
    const again = await badStatus();
    assert.equal(again.outlier?.ejections, 2);
    // 2 x 20 s from the moment of the ejection: well over one base time left.
    assert.ok(
      again.outlier!.ejectedForMs! > BASE_EJECTION_S * 1000,
      `${again.outlier!.ejectedForMs} ms left`,
    );
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    assert.match(metrics, /^smtp_lb_outlier_ejections_total\{[^}]*reason="deferrals"\} 2$/m);
  });
});
