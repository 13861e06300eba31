// Reply-aware health with two real Postfix backends, one told to defer every recipient
// (smtpd_recipient_restrictions = defer: 450 4.7.1 at RCPT): once it has deferred its share, the node
// ejects it, new sessions go to the healthy one (the messages arrive there, the deferring one sees no
// RCPT while ejected), /status, `smtp-lb status` and /metrics say so; after the ejection time it gets
// sessions again and, deferring still, is ejected again for twice as long. Greylisting that both
// backends do alike ejects neither (one message to 50 greylisted recipients is one vote), and a
// Postfix over its anvil connection rate (421 at the greeting) is ejected for failures while the
// clients never see its 421.
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

/** One session with one transaction to `rcpts`; the RCPT codes and the final reply, if any. */
async function session(port: number, rcpts: string[]): Promise<{ rcpts: number[]; data?: number }> {
  const c = await SmtpDialog.open(port);
  try {
    await c.read();
    await c.cmd('EHLO client.example.org');
    await c.cmd('MAIL FROM:<alice@example.org>');
    const codes: number[] = [];
    for (const to of rcpts) codes.push((await c.cmd(`RCPT TO:<${to}>`)).code);
    if (!codes.includes(250)) return { rcpts: codes };
    await c.cmd('DATA');
    return { rcpts: codes, data: (await c.cmd('Subject: test\r\n\r\nhello\r\n.')).code };
  } finally {
    await c.cmd('QUIT').catch(() => undefined);
    c.close();
  }
}

async function statusOf(lb: TestNode): Promise<NodeStatus> {
  const a = lb.node.adminAddress!;
  return (await (await fetch(`http://${a.host}:${a.port}/status`)).json()) as NodeStatus;
}

describe('outlier detection: greylisting both backends do alike ejects nobody', { timeout: 180_000 }, () => {
  let sink: CaptureBackend;
  let backends: PostfixInstance[];
  let lb: TestNode;

  before(async () => {
    sink = await startCaptureBackend();
    // Both greylist one domain, as postgrey would for a sender never seen before.
    const mainCf = {
      smtpd_recipient_restrictions:
        'check_recipient_access inline:{{grey.test=450 4.2.0 Greylisted, try again later}}, permit_mynetworks, reject_unauth_destination',
      // 50 refused RCPTs in one session: past 20 errors Postfix would hang up (421 too many errors).
      smtpd_soft_error_limit: '100',
      smtpd_hard_error_limit: '100',
    };
    backends = await Promise.all([
      startPostfix({ relayTo: sink.address, mainCf }),
      startPostfix({ relayTo: sink.address, mainCf }),
    ]);
    // Smooth WRR alternates the two, so greylisted sessions fall on both alike (least-connections
    // would split them at random, which at this low volume can look like an outlier).
    lb = await startNode(
      simpleConfig(
        backends.map((b) => b.address),
        {
          extraPool: '    outlierDetection: { minimumVolume: 3 }',
          extraTop: 'balancing: { policy: weighted-round-robin }',
        },
      ),
    );
  });
  after(async () => {
    await lb?.stop();
    await Promise.all(backends.map((b) => b.stop()));
    await sink?.close();
  });

  test('one message to 50 greylisted recipients is one vote; half of 60 sessions greylisted on both ejects neither', async () => {
    const big = await session(
      lb.port,
      Array.from({ length: 50 }, (_, i) => `r${i}@grey.test`),
    );
    assert.deepEqual(new Set(big.rcpts), new Set([450]));
    const after = await statusOf(lb);
    const votes = after.pools[0]!.backends.map((b) => b.outlier!);
    assert.deepEqual(
      votes.map((v) => [v.transactions, v.deferred]).sort(),
      [
        [0, 0],
        [1, 1],
      ],
      'one deferred transaction, not 50 deferred recipients',
    );
    // grey, grey, ok, ok, ...: each backend gets one of each pair.
    let delivered = 0;
    for (let k = 0; k < 60; k++) {
      const grey = k % 4 < 2;
      const r = await session(lb.port, [grey ? `s${k}@grey.test` : `s${k}@example.test`]);
      assert.deepEqual(r.rcpts, [grey ? 450 : 250]);
      if (!grey) {
        assert.equal(r.data, 250);
        delivered++;
      }
    }
    const s = await statusOf(lb);
    for (const b of s.pools[0]!.backends) {
      assert.notEqual(b.health, 'ejected', `${b.id}: ${JSON.stringify(b.outlier)}`);
      assert.ok(b.effectiveWeight >= 0.75, `${b.id}: weight ${b.effectiveWeight}`);
    }
    const total = s.pools[0]!.backends.reduce((n, b) => n + b.outlier!.transactions, 0);
    const deferred = s.pools[0]!.backends.reduce((n, b) => n + b.outlier!.deferred, 0);
    assert.deepEqual([total, deferred], [61, 31]);
    await sink.waitForMessages(delivered, 30_000);
    assert.ok(!lb.logs.some((l) => l.msg === 'backend ejected by outlier detection'));
  });
});

describe('outlier detection: a backend answering 421 at the greeting is ejected', {
  timeout: 120_000,
}, () => {
  let sink: CaptureBackend;
  let good: PostfixInstance;
  let busy: PostfixInstance;
  let lb: TestNode;

  before(async () => {
    sink = await startCaptureBackend();
    [good, busy] = await Promise.all([
      startPostfix({ relayTo: sink.address }),
      // anvil: one connection a minute from any client, the node's 127.0.0.1 included; past it
      // Postfix greets with "421 4.7.0 ... Error: too many connections from 127.0.0.1". Postfix
      // exempts XCLIENT-authorised clients from the limit, so this one does not authorise the node.
      startPostfix({
        relayTo: sink.address,
        xclientHosts: '192.0.2.1',
        mainCf: { smtpd_client_connection_rate_limit: '1', smtpd_client_event_limit_exceptions: '192.0.2.1' },
      }),
    ]);
    lb = await startNode(
      simpleConfig([busy.address, good.address], {
        extraPool: '    outlierDetection: { consecutiveFailures: 3, baseEjectionTime: 1m }',
      }),
    );
  });
  after(async () => {
    await lb?.stop();
    await Promise.all([good?.stop(), busy?.stop()]);
    await sink?.close();
  });

  test('the client never sees the 421 (another backend takes the session); after 3 in a row it is ejected', async () => {
    let n = 0;
    for (; n < 60; n++) {
      const r = await session(lb.port, [`g${n}@example.test`]);
      assert.deepEqual([r.rcpts, r.data], [[250], 250]);
      const b = (await statusOf(lb)).pools[0]!.backends.find((x) => x.id === busy.address)!;
      if (b.health === 'ejected') {
        assert.equal(b.outlier?.reason, 'failures');
        break;
      }
    }
    assert.ok(n < 60, 'ejected within 60 sessions');
    await busy.waitForLog(/Connection rate limit exceeded: \d+ from [^\n]*127\.0\.0\.1/, 10_000);
    assert.ok(
      lb.logs.some(
        (l) =>
          l.msg === 'backend ejected by outlier detection' &&
          l.reason === 'failures' &&
          l.backend === busy.address,
      ),
    );
    await sink.waitForMessages(n + 1, 30_000);
  });
});
