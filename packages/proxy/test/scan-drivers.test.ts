// The two scanner drivers on their own: rspamd over HTTP and the milter client against a real rspamd
// (its GTUBE patterns and the testkit's soft-reject rule), and both against servers that misbehave
// on purpose (garbage, silence, HTTP errors, a milter that negotiates steps away).
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  freePort,
  RSPAMD_GTUBE,
  RSPAMD_SOFT_REJECT_MESSAGE,
  RSPAMD_SOFT_REJECT_SUBJECT,
  type RspamdInstance,
  startRspamd,
} from '@smtp-lb/testkit';
import fc from 'fast-check';
import {
  Cmd,
  encodePacket,
  optneg,
  type Packet,
  PacketDecoder,
  Proto,
  Rep,
} from '../src/scan/milter/packets.js';
import { MilterScanner } from '../src/scan/milter.js';
import { parseCheckV2, RspamdScanner } from '../src/scan/rspamd.js';
import type { ScanEnvelope, Scanner, ScannerSession, ScanVerdict } from '../src/scan/scanner.js';
import { ScanError } from '../src/scan/scanner.js';

const T = { timeout: 60_000 };

function envelope(queueId: string, extra: Partial<ScanEnvelope> = {}): ScanEnvelope {
  return {
    sessionId: 'sess1',
    queueId,
    clientAddress: '192.0.2.7',
    clientPort: 40_000,
    helo: 'client.example.org',
    localHostname: 'mx.example.test',
    user: undefined,
    from: 'alice@example.org',
    mailArgs: { SIZE: '100' },
    rcpts: ['bob@example.test'],
    secure: false,
    ...extra,
  };
}

function message(subject: string, body: string): Buffer {
  return Buffer.from(
    [
      'From: Alice Example <alice@example.org>',
      'To: Bob Example <bob@example.test>',
      `Subject: ${subject}`,
      'Date: Tue, 01 Dec 2026 10:00:00 +0000',
      'Message-ID: <drivers-1@example.org>',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      body,
      '',
    ].join('\r\n'),
  );
}

/** One message through a session, in three chunks. */
async function scan(s: ScannerSession, env: ScanEnvelope, msg: Buffer): Promise<ScanVerdict> {
  const job = s.begin(env);
  const third = Math.floor(msg.length / 3);
  await job.push(msg.subarray(0, third));
  await job.push(msg.subarray(third, 2 * third));
  await job.push(msg.subarray(2 * third));
  return job.end();
}

describe('scanner drivers against a real rspamd', T, () => {
  let r: RspamdInstance;
  const scanners: Scanner[] = [];
  before(async () => {
    r = await startRspamd();
  });
  after(async () => {
    for (const s of scanners) await s.close();
    await r?.stop();
  });
  const make = (kind: 'rspamd' | 'milter') => {
    const s =
      kind === 'rspamd'
        ? new RspamdScanner({ name: 'spam', url: r.url, timeout: 10_000 })
        : new MilterScanner({ name: 'milt', host: r.host, port: r.milterPort, timeout: 10_000 });
    scanners.push(s);
    return s;
  };

  test('rspamd HTTP: GTUBE rejected with its text, clean accepted, soft reject deferred, add header counted', async () => {
    const s = make('rspamd').open('sess1');
    const spam = await scan(s, envelope('h1'), message('hello', RSPAMD_GTUBE.reject));
    assert.equal(spam.action, 'reject');
    assert.equal(spam.said, 'reject');
    assert.equal(spam.text, 'Gtube pattern');
    assert.deepEqual(spam.symbols, ['GTUBE']);
    const clean = await scan(s, envelope('h2'), message('lunch', 'Shall we meet at noon?'));
    assert.equal(clean.action, 'accept');
    assert.equal(clean.said, 'no action');
    assert.deepEqual(clean.modifications, []);
    const soft = await scan(s, envelope('h3'), message(RSPAMD_SOFT_REJECT_SUBJECT, 'later'));
    assert.equal(soft.action, 'defer');
    assert.equal(soft.text, RSPAMD_SOFT_REJECT_MESSAGE);
    const marked = await scan(s, envelope('h4'), message('hi', RSPAMD_GTUBE.addHeader));
    assert.equal(marked.action, 'accept');
    assert.deepEqual(marked.modifications, ['add header']);
    s.close();
  });

  test('rspamd HTTP: the envelope headers reach rspamd (IP, HELO, sender, recipients, queue id, user)', async () => {
    const s = make('rspamd').open('sess1');
    const env = envelope('h-env', { rcpts: ['bob@example.test', 'carol@example.test'], user: 'alice' });
    assert.equal((await scan(s, env, message('envelope', 'hi'))).action, 'accept');
    await r.waitForLog(/qid=<h-env>/);
    const seen = (await r.envelopes()).find((e) => e.queueId === 'h-env');
    assert.deepEqual(seen, {
      ip: '192.0.2.7',
      helo: 'client.example.org',
      hostname: 'unknown',
      from: 'alice@example.org',
      rcpt: ['bob@example.test', 'carol@example.test'],
      user: 'alice',
      queueId: 'h-env',
    });
  });

  test('milter: the same verdicts through the proxy worker, on one kept connection', async () => {
    const before = ((await r.log()).match(/accepted milter connection/g) ?? []).length;
    const s = make('milter').open('sess1');
    const env = (q: string) => envelope(q, { user: 'alice' });
    const spam = await scan(s, env('m1'), message('hello', RSPAMD_GTUBE.reject));
    assert.equal(spam.action, 'reject');
    assert.equal(spam.reply?.code, 554);
    assert.deepEqual(spam.reply?.lines, ['5.7.1 Gtube pattern']);
    const clean = await scan(s, env('m2'), message('lunch', 'Shall we meet at noon?'));
    assert.equal(clean.action, 'accept');
    const soft = await scan(s, env('m3'), message(RSPAMD_SOFT_REJECT_SUBJECT, 'later'));
    assert.equal(soft.action, 'defer');
    assert.equal(soft.reply?.code, 451);
    assert.match(soft.reply?.lines[0] ?? '', new RegExp(RSPAMD_SOFT_REJECT_MESSAGE.replace(/[()]/g, '\\$&')));
    s.close();
    const log = await r.log();
    assert.equal((log.match(/accepted milter connection/g) ?? []).length - before, 1, 'one connection');
    const seen = (await r.envelopes()).find((e) => e.queueId === 'm2');
    assert.equal(seen?.ip, '192.0.2.7');
    assert.equal(seen?.helo, 'client.example.org');
    assert.equal(seen?.from, 'alice@example.org');
    assert.deepEqual(seen?.rcpt, ['bob@example.test']);
    assert.equal(seen?.user, 'alice');
  });

  test('milter: a 1 MB message goes through to its end and gets its verdict', async () => {
    const s = make('milter').open('sess1');
    const big = message(RSPAMD_SOFT_REJECT_SUBJECT, 'lorem ipsum dolor sit amet\r\n'.repeat(40_000));
    const v = await scan(s, envelope('m-big'), big);
    assert.equal(v.action, 'defer');
    s.close();
  });
});

/** A milter written for the test: answers what `answer` says to each packet. */
async function fakeMilter(answer: (p: Packet, sock: net.Socket) => Buffer | undefined | 'hang') {
  const port = await freePort();
  const seen: Packet[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const d = new PacketDecoder();
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
      for (const p of d.push(chunk)) {
        seen.push(p);
        const a = answer(p, sock);
        if (a !== undefined && a !== 'hang') sock.write(a);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const cont = encodePacket(Rep.continue);

describe('the milter client against milters that misbehave', T, () => {
  test('steps the milter negotiated away are not sent, and their replies not awaited', async () => {
    const m = await fakeMilter((p) => {
      if (p.code === Cmd.optneg) return optneg(6, 0, Proto.noHeaders | Proto.noReplyBody | Proto.noHelo);
      if (p.code === Cmd.body || p.code === Cmd.macro) return undefined;
      return cont;
    });
    const s = new MilterScanner({ name: 'f', host: '127.0.0.1', port: m.port, timeout: 2000 }).open('x');
    const body = 'x'.repeat(150_000);
    const v = await scan(s, envelope('f1'), message('hi', body));
    assert.equal(v.action, 'accept');
    const codes = m.seen.map((p) => p.code).filter((c) => c !== Cmd.macro);
    assert.deepEqual(codes, ['O', 'C', 'M', 'R', 'T', 'N', 'B', 'B', 'B', 'E']);
    const chunks = m.seen.filter((p) => p.code === Cmd.body);
    assert.ok(chunks.every((p) => p.data.length <= 65_535));
    assert.equal(Buffer.concat(chunks.map((p) => p.data)).toString(), `${body}\r\n`);
    s.close();
    await m.close();
  });

  test('garbage, silence, a custom reply, discard: EPROTOCOL, ETIMEOUT, the reply itself, discard', async () => {
    let mode: 'garbage' | 'hang' | 'custom' | 'discard' = 'garbage';
    const m = await fakeMilter((p) => {
      if (p.code === Cmd.optneg) return optneg(6, 0, 0);
      if (p.code === Cmd.macro) return undefined;
      if (p.code !== Cmd.bodyEnd) return cont;
      if (mode === 'garbage') return Buffer.from([0, 0, 0, 2, 0x5a, 0x5a]);
      if (mode === 'hang') return 'hang';
      if (mode === 'discard') return encodePacket(Rep.discard);
      return Buffer.concat([
        encodePacket(Rep.progress),
        encodePacket(Rep.addHeader, Buffer.from('X-Spam\0yes\0')),
        encodePacket(Rep.replyCode, Buffer.from('550 5.7.1 not today\0')),
      ]);
    });
    const scanner = new MilterScanner({ name: 'f', host: '127.0.0.1', port: m.port, timeout: 300 });
    const s = scanner.open('x');
    await assert.rejects(scan(s, envelope('g1'), message('hi', 'x')), { code: 'EPROTOCOL' });
    mode = 'hang';
    const started = performance.now();
    await assert.rejects(scan(s, envelope('g2'), message('hi', 'x')), { code: 'ETIMEOUT' });
    assert.ok(performance.now() - started < 5000);
    mode = 'custom';
    const v = await scan(s, envelope('g3'), message('hi', 'x'));
    assert.equal(v.action, 'reject');
    assert.deepEqual(v.reply, { code: 550, enhanced: '5.7.1', lines: ['5.7.1 not today'] });
    assert.deepEqual(v.modifications, ['h']);
    mode = 'discard';
    const d = await scan(s, envelope('g4'), message('hi', 'x'));
    assert.equal(d.action, 'discard');
    s.close();
    await scanner.close();
    await m.close();
  });

  test('nobody listening: ECONNECT', async () => {
    const port = await freePort();
    const s = new MilterScanner({ name: 'f', host: '127.0.0.1', port, timeout: 1000 }).open('x');
    await assert.rejects(scan(s, envelope('n1'), message('hi', 'x')), { code: 'ECONNECT' });
  });
});

describe('the rspamd driver against servers that are not rspamd', T, () => {
  test('not JSON, an unknown action, HTTP 500, silence, nobody listening', async () => {
    let mode = 'text';
    const server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (mode === 'hang') return;
        if (mode === 'text') res.end('<html>hello</html>');
        else if (mode === 'action') res.end('{"action":"delete the internet"}');
        else {
          res.statusCode = 500;
          res.end('oops');
        }
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const scanner = new RspamdScanner({ name: 'x', url: `http://127.0.0.1:${port}`, timeout: 500 });
    const s = scanner.open('x');
    try {
      await assert.rejects(scan(s, envelope('t1'), message('hi', 'x')), { code: 'EPROTOCOL' });
      mode = 'action';
      await assert.rejects(scan(s, envelope('t2'), message('hi', 'x')), { code: 'EPROTOCOL' });
      mode = 'status';
      await assert.rejects(scan(s, envelope('t3'), message('hi', 'x')), { code: 'EHTTP' });
      mode = 'hang';
      await assert.rejects(scan(s, envelope('t4'), message('hi', 'x')), { code: 'ETIMEOUT' });
    } finally {
      await scanner.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    const gone = new RspamdScanner({ name: 'x', url: `http://127.0.0.1:${await freePort()}`, timeout: 500 });
    await assert.rejects(scan(gone.open('x'), envelope('t5'), message('hi', 'x')), { code: 'ECONNECT' });
    await gone.close();
  });
});

describe('backpressure', T, () => {
  test('a scanner that stops reading stops taking content: push waits, nothing piles up in the node', async (t) => {
    // Accepts the request and never reads its body.
    const held: net.Socket[] = [];
    const server = net.createServer((sock) => {
      sock.pause();
      held.push(sock);
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const scanner = new RspamdScanner({ name: 'x', url: `http://127.0.0.1:${port}`, timeout: 30_000 });
    const job = scanner.open('x').begin(envelope('bp'));
    const mib = Buffer.alloc(1024 * 1024, 0x61);
    let taken = 0;
    const deadline = performance.now() + 3000;
    while (taken < 64 && performance.now() < deadline) {
      const pushed = await Promise.race([
        job.push(mib).then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 500)),
      ]);
      if (!pushed) break;
      taken++;
    }
    t.diagnostic(`taken before the scanner stopped it: ${taken} MiB`);
    // What the kernel's socket buffers and the streams' high-water marks hold, not the 64 MiB offered.
    assert.ok(taken < 24, `the scanner took ${taken} MiB without reading`);
    job.abort();
    await scanner.close().catch(() => {});
    for (const s of held) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});

test('parseCheckV2 on any answer: a verdict rspamd could mean, or a ScanError; never anything else', () => {
  const actions = ['no action', 'add header', 'rewrite subject', 'greylist', 'soft reject', 'reject'];
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 200 }),
        fc.json({ maxDepth: 3 }),
        fc
          .record({
            action: fc.oneof(fc.constantFrom(...actions), fc.string({ maxLength: 20 }), fc.integer()),
            score: fc.oneof(fc.double(), fc.string({ maxLength: 5 })),
            symbols: fc.dictionary(fc.string({ maxLength: 20 }), fc.record({ score: fc.double() }), {
              maxKeys: 8,
            }),
            messages: fc.record({ smtp_message: fc.string({ maxLength: 600 }) }),
          })
          .map((o) => JSON.stringify(o)),
      ),
      (text) => {
        try {
          const v = parseCheckV2(text);
          assert.ok(['accept', 'reject', 'defer'].includes(v.action));
          assert.ok(actions.includes(v.said));
          if (v.text !== undefined) assert.match(v.text, /^[ -~]{1,400}$/);
          assert.ok((v.symbols ?? []).length <= 5);
        } catch (err) {
          assert.ok(err instanceof ScanError, String(err));
        }
      },
    ),
    { seed: 15, numRuns: 500, interruptAfterTimeLimit: 10_000 },
  );
});
