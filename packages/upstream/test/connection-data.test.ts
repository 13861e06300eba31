// DATA against the wire recorder, which un-stuffs strictly and keeps the bytes as sent: what it stores must be
// exactly the content, whatever the chunking; bare newlines, size limits and refusals end the
// transfer without a final dot, and the caller's stream is never destroyed.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import type { WireBackendOptions } from '@smtp-lb/testkit';
import {
  connectUpstream,
  type UpstreamConnection,
  type UpstreamError,
  type UpstreamOptions,
} from '../src/index.js';
import { body, esmtp, identity, options, stub, wireBackend } from './helpers/setup.js';

async function ready(opts?: WireBackendOptions, over?: Partial<UpstreamOptions>) {
  const b = await wireBackend(opts);
  const conn = await connectUpstream(options(b, over), identity);
  const env = await conn.envelope({ address: 'a@x.test', params: {} }, [{ address: 'b@y.test', params: {} }]);
  assert.equal(env.rcpts[0]!.code, 250);
  return { b, conn };
}

const normalize = { bareNewlines: 'normalize' as const };
const reject = { bareNewlines: 'reject' as const };

function aborted(reason: string) {
  return (e: UpstreamError) => {
    assert.equal(e.code, 'EABORTED');
    assert.equal(e.stage, 'data');
    assert.equal(e.abortReason, reason);
    return true;
  };
}

async function noFinalDot(b: Awaited<ReturnType<typeof wireBackend>>, conn: UpstreamConnection) {
  assert.equal(conn.closed, true);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(b.messages.length, 0, 'the backend took no message');
  assert.equal(b.sessions[0]!.bytes().includes('\r\n.\r\n'), false, 'no final dot reached the backend');
}

describe('data', { timeout: 30_000 }, () => {
  it('dot-stuffs every line starting with a dot, across chunk boundaries, and the backend gets the content back', async () => {
    const { b, conn } = await ready();
    const reply = await conn.data(
      body('.first\r\n..\r\n.', '\r\n', '.x', '\r\n', '.', '.', '\r', '\nend'),
      normalize,
    );
    assert.deepEqual(reply, { code: 250, enhanced: '2.0.0', lines: ['2.0.0 Ok: queued as 1'] });
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.data.toString(), '.first\r\n..\r\n.\r\n.x\r\n..\r\nend\r\n');
    assert.equal(m!.raw.toString(), '..first\r\n...\r\n..\r\n..x\r\n...\r\nend\r\n');
    assert.equal(m!.earlyData, false, 'no content byte before the 354');
    await conn.quit();
  });

  it('normalizes bare CR and LF to CRLF, a CRLF split across chunks staying one line end', async () => {
    const { b, conn } = await ready();
    await conn.data(body('a\nb\rc\r', '\nd\n.\n', 'e\r', '\r\n', 'f\r'), normalize);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.data.toString(), 'a\r\nb\r\nc\r\nd\r\n.\r\ne\r\n\r\nf\r\n');
    assert.equal(m!.raw.toString(), 'a\r\nb\r\nc\r\nd\r\n..\r\ne\r\n\r\nf\r\n');
    await conn.quit();
  });

  it('rejects a bare LF with EABORTED bare-newline: no final dot, the stream left to the caller', async () => {
    const { b, conn } = await ready();
    const src = body('fine\r\n', 'bad\nline\r\n', 'more\r\n');
    await assert.rejects(conn.data(src, reject), aborted('bare-newline'));
    assert.equal(src.destroyed, false);
    const rest: string[] = [];
    for await (const c of src) rest.push(String(c));
    assert.deepEqual(rest, ['more\r\n'], 'the caller can drain what is left');
    await noFinalDot(b, conn);
  });

  it('rejects a bare CR that ends the content', async () => {
    const { b, conn } = await ready();
    await assert.rejects(conn.data(body('x\r\ny\r'), reject), aborted('bare-newline'));
    await noFinalDot(b, conn);
  });

  it('refuses a NUL by default with EABORTED nul: no final dot, nothing of its chunk sent', async () => {
    const { b, conn } = await ready();
    await assert.rejects(
      conn.data(body('fine\r\n', 'a\r\n\x00.\r\nMAIL FROM:<x@y>\r\n'), normalize),
      aborted('nul'),
    );
    await noFinalDot(b, conn);
    assert.equal(b.sessions[0]!.bytes().includes(0), false, 'no NUL reached the backend');
  });

  it('strips NUL with nulBytes: strip before stuffing, so a NUL-hidden dot line stays content', async () => {
    const { b, conn } = await ready();
    await conn.data(body('a\r\n\x00', '.\r\nb\x00\r\n'), { ...normalize, nulBytes: 'strip' });
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.raw.toString('latin1'), 'a\r\n..\r\nb\r\n');
    await conn.quit();
  });

  it('carries 998-character lines and 8-bit bytes untouched', async () => {
    const { b, conn } = await ready();
    const long = Buffer.alloc(998, 'x');
    // Every byte value but the three the encoder acts on (NUL, LF, CR).
    const eight = Buffer.from(
      Array.from({ length: 256 }, (_, i) => i).filter((i) => i !== 0 && i !== 10 && i !== 13),
    );
    const content = Buffer.concat([
      long,
      Buffer.from('\r\n'),
      eight,
      Buffer.from('\r\n'),
      long,
      Buffer.from('\r\n'),
    ]);
    await conn.data(
      body(content.subarray(0, 500), content.subarray(500, 1300), content.subarray(1300)),
      reject,
    );
    const [m] = await b.waitForMessages(1);
    assert.deepEqual(m!.data, content);
    await conn.quit();
  });

  it('aborts on a line over 998 octets with EABORTED long-line and never sends the final dot', async () => {
    const { b, conn } = await ready();
    const src = new PassThrough();
    src.write('Subject: long\r\n\r\n');
    src.write(Buffer.alloc(999, 'x'));
    src.end('.\r\nMAIL FROM:<forged@example.org>\r\n');
    await assert.rejects(conn.data(src, normalize), aborted('long-line'));
    await noFinalDot(b, conn);
  });

  it('sends a line over 998 octets unchanged with longLines: pass', async () => {
    const { b, conn } = await ready();
    const content = Buffer.concat([Buffer.alloc(5000, 'y'), Buffer.from('\r\n')]);
    await conn.data(body(content.subarray(0, 3000), content.subarray(3000)), {
      ...normalize,
      longLines: 'pass',
    });
    const [m] = await b.waitForMessages(1);
    assert.deepEqual(m!.data, content);
    await conn.quit();
  });

  it('aborts past maxBytes with EABORTED size and never sends the final dot', async () => {
    const { b, conn } = await ready();
    const chunk = Buffer.from(`${'a'.repeat(78)}\r\n`.repeat(52)); // 4160 bytes
    const src = new PassThrough();
    for (let i = 0; i < 3; i++) src.write(chunk);
    await assert.rejects(conn.data(src, { ...normalize, maxBytes: 10_000 }), aborted('size'));
    assert.equal(src.destroyed, false, 'the caller still owns an open stream');
    assert.equal(src.write('still writable\r\n'), true);
    await noFinalDot(b, conn);
    assert.ok(b.sessions[0]!.bytes().length < 10_000 + 200, 'the over-limit chunk was not sent');
  });

  it('aborts with EABORTED source when the body stream fails', async () => {
    const { b, conn } = await ready();
    const src = new PassThrough();
    src.write('part\r\n');
    setTimeout(() => src.destroy(new Error('client went away')), 30);
    await assert.rejects(conn.data(src, normalize), aborted('source'));
    await noFinalDot(b, conn);
  });

  it('resolves a refused DATA as-is without reading the body', async () => {
    const { b, conn } = await ready({
      reply: ({ verb }) => (verb === 'DATA' ? '554 5.5.1 Error: no valid recipients' : undefined),
    });
    const src = body('content\r\n');
    const reply = await conn.data(src, normalize);
    assert.deepEqual(reply, { code: 554, enhanced: '5.5.1', lines: ['5.5.1 Error: no valid recipients'] });
    assert.notEqual(src.readableFlowing, true);
    assert.equal(String(src.read()), 'content\r\n', 'the body is untouched');
    assert.equal(conn.closed, false);
    assert.equal((await conn.rset()).code, 250);
    await conn.quit();
    assert.equal(b.sessions[0]!.bytes().includes('content'), false);
  });

  it('fails EPROTOCOL on a 250 to DATA', async () => {
    const { conn } = await ready({ reply: ({ verb }) => (verb === 'DATA' ? '250 2.0.0 sure' : undefined) });
    await assert.rejects(conn.data(body('x\r\n'), normalize), {
      code: 'EPROTOCOL',
      stage: 'data',
      responseCode: 250,
    });
    assert.equal(conn.closed, true);
  });

  it('relays the final reply verbatim, 4xx and 5xx being results', async () => {
    const { conn } = await ready({ dataReply: () => '451-4.7.1 Greylisted\r\n451 4.7.1 come back later' });
    const reply = await conn.data(body('x\r\n'), normalize);
    assert.deepEqual(reply, {
      code: 451,
      enhanced: '4.7.1',
      lines: ['4.7.1 Greylisted', '4.7.1 come back later'],
    });
    await conn.quit();
  });

  it('sends an empty message as just the final dot', async () => {
    const { b, conn } = await ready();
    assert.equal((await conn.data(body(), normalize)).code, 250);
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.rawSize, 0);
    await conn.quit();
  });

  it('fails ETIMEOUT at data or dataDone when the backend stays silent', async () => {
    const t = options({ port: 1 }).timeouts;
    const quick = { timeouts: { ...t, dataStart: 150, dataDone: 150 } };
    const start = await ready({ reply: ({ verb }) => (verb === 'DATA' ? null : undefined) }, quick);
    await assert.rejects(start.conn.data(body('x\r\n'), normalize), { code: 'ETIMEOUT', stage: 'data' });
    const done = await ready({ dataReply: () => null }, quick);
    await assert.rejects(done.conn.data(body('x\r\n'), normalize), { code: 'ETIMEOUT', stage: 'dataDone' });
  });

  it('times each reply by its own deadline, whatever the deadlines of the commands before it', async () => {
    // One timer serves the whole connection: it must neither fire DATA's wait early (left over from
    // a shorter command deadline) nor late (left over from a longer one).
    const t = options({ port: 1 }).timeouts;
    const silentData = { reply: ({ verb }: { verb: string }) => (verb === 'DATA' ? null : undefined) };
    const cases = [
      { command: 100, dataStart: 400 },
      { command: 20_000, dataStart: 150 },
    ];
    for (const { command, dataStart } of cases) {
      const { conn } = await ready(silentData, { timeouts: { ...t, command, dataStart } });
      const started = performance.now();
      await assert.rejects(conn.data(body('x\r\n'), normalize), (e: UpstreamError) => {
        assert.equal(e.code, 'ETIMEOUT');
        assert.equal(e.stage, 'data');
        assert.equal(e.message, `no reply to DATA within ${dataStart} ms`);
        return true;
      });
      const waited = performance.now() - started;
      assert.ok(waited >= dataStart - 1, `waited ${waited} ms of ${dataStart}`);
      assert.ok(waited < dataStart + 5000, `waited ${waited} ms of ${dataStart}`);
    }
  });

  it('fails ETIMEOUT at data when the backend stops taking content', async () => {
    const s = await stub(esmtp());
    const o = options(s);
    const conn = await connectUpstream({ ...o, timeouts: { ...o.timeouts, dataBlock: 300 } }, identity);
    await conn.envelope({ address: 'a@x.test', params: {} }, [{ address: 'b@y.test', params: {} }]);
    const line = Buffer.alloc(1000, 'x');
    line.write('\r\n', 998);
    let produced = 0;
    const src = new PassThrough({ highWaterMark: 65536 });
    const pump = () => {
      while (produced < 200_000 && src.write(line)) produced++;
      if (produced < 200_000) src.once('drain', pump);
    };
    pump();
    await assert.rejects(conn.data(src, normalize), { code: 'ETIMEOUT', stage: 'data' });
    assert.ok(produced < 200_000, `the source was paused after ${produced} lines`);
  });

  it('fails EPROTOCOL on a 5xx from the backend before our final dot and drops the connection', async () => {
    const s = await stub(esmtp(), (_chunk, socket) => {
      socket.write('552 5.3.4 Message size exceeds fixed limit\r\n');
    });
    const conn = await connectUpstream(options(s), identity);
    await conn.envelope({ address: 'a@x.test', params: {} }, [{ address: 'b@y.test', params: {} }]);
    const src = new PassThrough();
    src.write('first\r\n');
    await assert.rejects(conn.data(src, normalize), (e: UpstreamError) => {
      assert.equal(e.code, 'EPROTOCOL');
      assert.equal(e.reply?.code, 552);
      assert.match(e.message, /before our final dot reached it/);
      return true;
    });
    assert.equal(conn.closed, true);
    assert.equal(src.destroyed, false);
  });

  it('fails EABORTED caller when destroyed mid-transfer', async () => {
    const { b, conn } = await ready();
    const src = new PassThrough();
    src.write('hello\r\n');
    const pending = conn.data(src, normalize);
    setTimeout(() => conn.destroy(), 50);
    await assert.rejects(pending, { code: 'EABORTED', stage: 'data', abortReason: 'caller' });
    await noFinalDot(b, conn);
  });
});
