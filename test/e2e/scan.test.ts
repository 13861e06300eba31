// Content scanning before our final dot, through a node in front of a real Postfix, with a real
// rspamd giving verdicts from its own rules: GTUBE is refused with 554 and Postfix queues nothing, a
// clean message is queued, rspamd's soft reject is 450 and Postfix has nothing; the same through the
// milter driver against rspamd's proxy worker. A scanner that is down, hangs or answers garbage gets
// its `onError`: never a 250 the backend did not give with defer or reject, never a wait beyond the
// timeout. rspamd saw the client's real IP, HELO and envelope.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { replies, wireReply } from '@smtp-lb/proxy';
import {
  freePort,
  type PostfixInstance,
  RSPAMD_GTUBE,
  RSPAMD_SOFT_REJECT_MESSAGE,
  RSPAMD_SOFT_REJECT_SUBJECT,
  type RspamdInstance,
  startPostfix,
  startRspamd,
} from '@smtp-lb/testkit';
import { configFrom, simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { type RawReply, SmtpDialog } from '../helpers/smtp-dialog.js';

const CLIENT = '127.0.0.2';
const HELO = 'client.example.org';

function message(from: string, subject: string, body: string): string {
  return [
    `From: Alice Example <${from}>`,
    'To: Bob Example <bob@example.test>',
    `Subject: ${subject}`,
    'Date: Tue, 01 Dec 2026 10:00:00 +0000',
    `Message-ID: <${Math.random().toString(36).slice(2)}@example.org>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    body,
    '',
  ].join('\r\n');
}

/** One transaction from 127.0.0.2; returns the reply to the final dot and the session's duration. */
async function send(port: number, from: string, subject: string, body: string): Promise<RawReply> {
  const c = await SmtpDialog.open(port, '127.0.0.1', CLIENT);
  try {
    await c.read();
    await c.cmd(`EHLO ${HELO}`);
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
    const rcpt = await c.cmd('RCPT TO:<bob@example.test>');
    assert.equal(rcpt.code, 250, rcpt.raw);
    assert.equal((await c.cmd('DATA')).code, 354);
    return await c.cmd(`${message(from, subject, body)}.`, 60_000);
  } finally {
    c.close();
  }
}

async function metric(n: TestNode, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await n.node.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return Number(v?.value ?? 0);
}

/** Postfix never took a message from `from` (its log has no envelope line for it). */
async function nothingFrom(pf: PostfixInstance, from: string): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  assert.doesNotMatch(await pf.log(), new RegExp(`from=<${from.replace('.', '\\.')}>`));
}

describe('content scanning through a node in front of Postfix', { timeout: 180_000 }, () => {
  let rspamd: RspamdInstance;
  let pf: PostfixInstance;
  const nodes: TestNode[] = [];
  let junk: Server;
  let junkPort: number;
  before(async () => {
    [rspamd, pf] = await Promise.all([startRspamd(), startPostfix()]);
    // Something that is not rspamd: 200 with a body that is no JSON.
    junk = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('<html>not rspamd</html>'));
    });
    junkPort = await freePort();
    await new Promise<void>((r) => junk.listen(junkPort, '127.0.0.1', r));
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    junk?.close();
    await Promise.all([rspamd?.stop(), pf?.stop()]);
  });
  const start = async (scanners: string, scan = 'spam') => {
    const n = await startNode(
      simpleConfig([pf.address], {
        extraListener: `    scan: ${scan}\n`,
        extraTop: `scanners:\n${scanners}`,
      }),
    );
    nodes.push(n);
    return n;
  };

  for (const driver of ['rspamd', 'milter'] as const) {
    test(`${driver}: GTUBE 554 and nothing queued, clean queued, soft reject 450 and nothing queued`, async () => {
      const spec =
        driver === 'rspamd'
          ? `{ rspamd: { url: "${rspamd.url}" }, onError: defer }`
          : `{ milter: { address: "${rspamd.milterAddress}" }, onError: defer }`;
      const n = await start(`  spam: ${spec}\n`);
      const spam = await send(n.port, `gtube-${driver}@example.org`, 'hello', RSPAMD_GTUBE.reject);
      assert.equal(spam.code, 554, spam.raw);
      // rspamd's text in our reply; the milter's own reply (554 5.7.1 Gtube pattern) is the same here.
      assert.equal(spam.raw, wireReply(replies.scanReject('Gtube pattern')));
      const clean = await send(n.port, `clean-${driver}@example.org`, 'lunch', 'Shall we meet at noon?');
      assert.equal(clean.code, 250, clean.raw);
      const id = /queued as ([0-9A-F]+)/.exec(clean.raw)?.[1];
      assert.ok(id, clean.raw);
      await pf.waitForLog(new RegExp(`${id}: from=<clean-${driver}@example\\.org>`));
      const soft = await send(n.port, `soft-${driver}@example.org`, RSPAMD_SOFT_REJECT_SUBJECT, 'later');
      assert.equal(Math.floor(soft.code / 100), 4, soft.raw);
      assert.match(
        soft.raw,
        new RegExp(`^45[01] 4\\.7\\.1 .*${RSPAMD_SOFT_REJECT_MESSAGE.replace(/[()]/g, '\\$&')}`),
      );
      if (driver === 'rspamd')
        assert.equal(soft.raw, wireReply(replies.scanDefer(RSPAMD_SOFT_REJECT_MESSAGE)));
      await nothingFrom(pf, `gtube-${driver}@example.org`);
      await nothingFrom(pf, `soft-${driver}@example.org`);
      assert.equal(await metric(n, 'smtp_lb_scan_verdicts_total', { scanner: 'spam', action: 'reject' }), 1);
      assert.equal(await metric(n, 'smtp_lb_scan_verdicts_total', { scanner: 'spam', action: 'accept' }), 1);
      assert.equal(await metric(n, 'smtp_lb_scan_verdicts_total', { scanner: 'spam', action: 'defer' }), 1);
      const line = n.logs.find((l) => l.msg === 'message scanned' && l.action === 'reject');
      assert.ok(line, 'a log line for the rejected message');
      if (driver === 'rspamd') {
        assert.equal(line.said, 'reject');
        assert.deepEqual(line.symbols, ['GTUBE']);
        assert.equal(line.score, 15);
      }
      // rspamd saw the client as the client is, not as the node.
      const env = (await rspamd.envelopes()).find((e) => e.from === `clean-${driver}@example.org`);
      assert.ok(env, 'rspamd logged the clean message');
      assert.equal(env.ip, CLIENT);
      assert.equal(env.helo, HELO);
      assert.deepEqual(env.rcpt, ['bob@example.test']);
      assert.match(env.queueId, /^[0-9a-z]+\.1$/i);
    });
  }

  test('add header: accepted, the modification counted and logged once for the scanner', async () => {
    const n = await start(`  spam: { rspamd: { url: "${rspamd.url}" } }\n`);
    for (let i = 0; i < 2; i++) {
      const r = await send(n.port, `mark${i}@example.org`, 'hi', RSPAMD_GTUBE.addHeader);
      assert.equal(r.code, 250, r.raw);
    }
    assert.equal(await metric(n, 'smtp_lb_scan_modifications_total', { scanner: 'spam' }), 2);
    const warned = n.logs.filter((l) => String(l.msg).includes('streaming cannot apply'));
    assert.equal(warned.length, 1);
  });

  test('rspamd down: onError accept relays (logged, counted), defer 451 4.3.5, reject 554 5.7.1', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const n = await start(
      `  open: { rspamd: { url: "${dead}" }, timeout: 2s }
  shut: { rspamd: { url: "${dead}" }, timeout: 2s, onError: defer }
  hard: { rspamd: { url: "${dead}" }, timeout: 2s, onError: reject }
`,
      'open',
    );
    const r = await send(n.port, 'down-open@example.org', 'hi', 'x');
    assert.equal(r.code, 250, r.raw);
    assert.ok(n.logs.some((l) => l.msg === 'content scanner failed' && l.onError === 'accept'));
    assert.equal(await metric(n, 'smtp_lb_scan_verdicts_total', { scanner: 'open', action: 'error' }), 1);
    for (const [name, code, text] of [
      ['shut', 451, wireReply(replies.scanUnavailable())],
      ['hard', 554, wireReply(replies.scanFailedReject())],
    ] as const) {
      const m = await start(
        `  ${name}: { rspamd: { url: "${dead}" }, timeout: 2s${name === 'shut' ? ', onError: defer' : ', onError: reject'} }\n`,
        name,
      );
      const got = await send(m.port, `down-${name}@example.org`, 'hi', 'x');
      assert.equal(got.code, code, got.raw);
      assert.equal(got.raw, text);
      await nothingFrom(pf, `down-${name}@example.org`);
    }
  });

  test('rspamd hanging: onError defer answers 451 within the timeout; garbage is 451 too', async () => {
    const n = await start(
      `  spam: { rspamd: { url: "${rspamd.url}" }, timeout: 1500ms, onError: defer }
  junk: { rspamd: { url: "http://127.0.0.1:${junkPort}" }, timeout: 2s, onError: defer }
`,
    );
    rspamd.pause();
    let hung: RawReply;
    const started = performance.now();
    try {
      hung = await send(n.port, 'hang@example.org', 'hi', 'x');
    } finally {
      rspamd.resume();
    }
    const took = performance.now() - started;
    assert.equal(hung.code, 451, hung.raw);
    assert.ok(took < 10_000, `answered after ${took} ms`);
    const m = await start(
      `  junk: { rspamd: { url: "http://127.0.0.1:${junkPort}" }, timeout: 2s, onError: defer }\n`,
      'junk',
    );
    const g = await send(m.port, 'junk@example.org', 'hi', 'x');
    assert.equal(g.code, 451, g.raw);
    assert.ok(
      m.logs.some(
        (l) => l.msg === 'content scanner failed' && (l.err as { code?: string })?.code === 'EPROTOCOL',
      ),
    );
    await nothingFrom(pf, 'hang@example.org');
    await nothingFrom(pf, 'junk@example.org');
  });

  test('two scanners: the strictest verdict wins', async () => {
    const n = await start(
      `  spam: { rspamd: { url: "${rspamd.url}" } }
  milt: { milter: { address: "${rspamd.milterAddress}" } }
  junk: { rspamd: { url: "http://127.0.0.1:${junkPort}" }, timeout: 2s, onError: defer }
`,
      '[spam, junk]',
    );
    // rspamd accepts, the broken one defers: 451.
    const r = await send(n.port, 'two@example.org', 'lunch', 'Shall we meet at noon?');
    assert.equal(r.code, 451, r.raw);
    const both = await start(
      `  spam: { rspamd: { url: "${rspamd.url}" } }
  milt: { milter: { address: "${rspamd.milterAddress}" } }
  junk: { rspamd: { url: "http://127.0.0.1:${junkPort}" }, timeout: 2s, onError: defer }
`,
      '[junk, spam]',
    );
    // The broken one defers, rspamd rejects: 554.
    const s = await send(both.port, 'two-spam@example.org', 'hello', RSPAMD_GTUBE.reject);
    assert.equal(s.code, 554, s.raw);
    await nothingFrom(pf, 'two@example.org');
  });

  test('a refusal before the backend even said 354 is a reply, not a crash; no final dot reaches it', async () => {
    // A backend slow to answer DATA: the whole (small) message and the verdict are in before its 354.
    let dots = 0;
    let datas = 0;
    const slow = net.createServer((sock) => {
      let inData = false;
      let buf = '';
      sock.on('error', () => {});
      sock.write('220 slow.test ESMTP\r\n');
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        if (inData) {
          if (buf.includes('\r\n.\r\n')) {
            dots++;
            sock.write('250 2.0.0 Ok\r\n');
          }
          return;
        }
        for (let i = buf.indexOf('\r\n'); i >= 0 && !inData; i = buf.indexOf('\r\n')) {
          const line = buf.slice(0, i).toUpperCase();
          buf = buf.slice(i + 2);
          if (line.startsWith('EHLO')) sock.write('250-slow.test\r\n250 PIPELINING\r\n');
          else if (line === 'DATA') {
            datas++;
            inData = true;
            setTimeout(() => sock.write('354 go ahead\r\n'), 700);
          } else if (line === 'QUIT') sock.end('221 bye\r\n');
          else sock.write('250 2.0.0 Ok\r\n');
        }
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => slow.listen(port, '127.0.0.1', r));
    try {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const n = await startNode(
        simpleConfig([`127.0.0.1:${port}`], {
          extraListener: '    scan: hard\n',
          extraTop: `scanners:\n  hard: { rspamd: { url: "${dead}" }, onError: reject }\n`,
        }),
      );
      nodes.push(n);
      const r = await send(n.port, 'early@example.org', 'hi', 'x');
      assert.equal(r.code, 554, r.raw);
      // The node lives on and takes the next message.
      const again = await send(n.port, 'early2@example.org', 'hi', 'x');
      assert.equal(again.code, 554, again.raw);
      await new Promise((res) => setTimeout(res, 1000));
      assert.equal(datas, 2);
      assert.equal(dots, 0);
    } finally {
      slow.close();
    }
  });

  test('a milter that discards: refused with 554 5.7.1 and a log line, nothing queued', async () => {
    // A milter of a few lines: negotiates, continues everything, discards at end of body.
    const packet = (code: string, data = Buffer.alloc(0)) => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(data.length + 1, 0);
      head[4] = code.charCodeAt(0);
      return Buffer.concat([head, data]);
    };
    const milter = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('error', () => {});
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const len = buf.readUInt32BE(0);
          const cmd = String.fromCharCode(buf[4]!);
          buf = buf.subarray(4 + len);
          if (cmd === 'O') {
            const opts = Buffer.alloc(12);
            opts.writeUInt32BE(6, 0);
            sock.write(packet('O', opts));
          } else if (cmd === 'E') sock.write(packet('d'));
          else if (cmd !== 'D' && cmd !== 'A' && cmd !== 'Q') sock.write(packet('c'));
        }
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => milter.listen(port, '127.0.0.1', r));
    try {
      const n = await start(`  spam: { milter: { address: "127.0.0.1:${port}" }, onError: defer }\n`);
      const r = await send(n.port, 'discarded@example.org', 'hi', 'x');
      assert.equal(r.code, 554, r.raw);
      assert.equal(r.raw, wireReply(replies.scanDiscard()));
      assert.ok(n.logs.some((l) => l.msg === 'message discarded by the scanner: refused'));
      assert.equal(await metric(n, 'smtp_lb_scan_verdicts_total', { scanner: 'spam', action: 'discard' }), 1);
      await nothingFrom(pf, 'discarded@example.org');
    } finally {
      milter.close();
    }
  });

  test('SIGHUP: a listener starts scanning, a scanner changes address, without a restart', async () => {
    const yaml = (scan: string, scanners: string) =>
      simpleConfig([pf.address], { extraListener: scan, extraTop: scanners })
        // The reload must keep the listener where it is.
        .replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${port}`);
    const port = await freePort();
    const n = await startNode(yaml('', ''));
    nodes.push(n);
    assert.equal((await send(n.port, 'hup1@example.org', 'hello', RSPAMD_GTUBE.reject)).code, 250);
    const dead = `http://127.0.0.1:${await freePort()}`;
    await n.node.reload(
      configFrom(
        yaml('    scan: spam\n', `scanners:\n  spam: { rspamd: { url: "${dead}" }, onError: defer }\n`),
      ),
    );
    const down = await send(n.port, 'hup2@example.org', 'hello', RSPAMD_GTUBE.reject);
    assert.equal(down.raw, wireReply(replies.scanUnavailable()));
    await n.node.reload(
      configFrom(
        yaml('    scan: spam\n', `scanners:\n  spam: { rspamd: { url: "${rspamd.url}" }, onError: defer }\n`),
      ),
    );
    const spam = await send(n.port, 'hup3@example.org', 'hello', RSPAMD_GTUBE.reject);
    assert.equal(spam.raw, wireReply(replies.scanReject('Gtube pattern')));
  });
});
