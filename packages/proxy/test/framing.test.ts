// The SMTP front's framing on its own: DATA un-stuffing and its end (only CRLF.CRLF) for every way
// the bytes can be cut, command lines under the cap, and both against a reference over random
// inputs (seeded, bounded): the cut between TCP chunks never changes the content or what follows.
import assert from 'node:assert/strict';
import { PassThrough, type Readable } from 'node:stream';
import { test } from 'node:test';
import { encodeWire, hasRawBytes } from '@smtp-lb/upstream';
import { CommandLines, DotReader, MAX_LINE, TOO_LONG } from '../src/front/framing.js';
import { dataCases as cases } from './data-cases.js';

/** Feeds `chunks` to a fresh reader; the content the session would read and what followed the dot. */
async function read(chunks: Buffer[]): Promise<{ content: string; rest: string | undefined }> {
  const reader = new DotReader();
  const socket = new PassThrough();
  const body: Readable = reader.begin(socket);
  const parts: Buffer[] = [];
  body.on('data', (b: Buffer) => parts.push(b));
  const ended = new Promise<void>((resolve) => body.on('end', resolve));
  let rest: Buffer | undefined;
  const after: Buffer[] = [];
  for (const c of chunks) {
    if (rest !== undefined) after.push(c);
    else rest = reader.feed(c);
  }
  if (rest !== undefined) await ended;
  else await new Promise((r) => setImmediate(r));
  return {
    content: Buffer.concat(parts).toString('latin1'),
    rest: rest === undefined ? undefined : Buffer.concat([rest, ...after]).toString('latin1'),
  };
}

const b = (s: string) => Buffer.from(s, 'latin1');

for (const [name, wire, content] of cases) {
  test(`DotReader, ${name}: the same content and rest for every cut into two chunks and byte by byte`, async () => {
    const full = b(`${wire}NOOP\r\n`);
    for (let cut = 0; cut <= full.length; cut++) {
      const got = await read([full.subarray(0, cut), full.subarray(cut)]);
      assert.deepEqual(got, { content, rest: 'NOOP\r\n' }, `cut at ${cut}`);
    }
    const bytes = [...full].map((x) => Buffer.from([x]));
    assert.deepEqual(await read(bytes), { content, rest: 'NOOP\r\n' });
  });
}

test('DotReader: without the final dot the message has not ended', async () => {
  assert.deepEqual(await read([b('a\r\n.\n'), b('b\r\n..\r\n')]), {
    content: 'a\r\n.\nb\r\n.\r\n',
    rest: undefined,
  });
});

test('DotReader: a body nobody reads pauses the socket; reading resumes it', async () => {
  const reader = new DotReader();
  const socket = new PassThrough();
  const body = reader.begin(socket);
  socket.resume();
  assert.equal(socket.isPaused(), false);
  reader.feed(Buffer.alloc(64 * 1024, 0x61));
  assert.equal(socket.isPaused(), true, 'over the high-water mark');
  body.read();
  assert.equal(socket.isPaused(), false, 'read() resumes the client');
});

test('DotReader: a reader that dropped out gets nothing more, the end is still found', async () => {
  const reader = new DotReader();
  const body = reader.begin(new PassThrough());
  const parts: Buffer[] = [];
  body.on('data', (x: Buffer) => parts.push(x));
  reader.feed(b('first\r\n'));
  await new Promise((r) => setImmediate(r));
  reader.drop();
  assert.equal(reader.feed(b('second\r\n')), undefined);
  assert.equal(reader.feed(b('.\r\nQUIT\r\n'))?.toString(), 'QUIT\r\n');
  assert.equal(Buffer.concat(parts).toString(), 'first\r\n');
});

test('DotReader: fail() destroys a body in progress with the reason, and nothing once ended', async () => {
  const reader = new DotReader();
  const body = reader.begin(new PassThrough());
  const failed = new Promise<Error>((resolve) => body.on('error', resolve));
  reader.fail('client went away during DATA');
  assert.match((await failed).message, /client went away/);
  const again = reader.begin(new PassThrough());
  again.resume();
  reader.feed(b('.\r\n'));
  reader.fail('too late');
  assert.equal(again.errored, null);
});

test('CommandLines: CRLF and LF end lines, a partial line waits, over the cap is TOO_LONG', () => {
  const lines = new CommandLines();
  lines.push(b('EHLO a\r\nNOOP\nMAIL FR'));
  assert.equal(lines.next(), 'EHLO a');
  assert.equal(lines.next(), 'NOOP');
  assert.equal(lines.next(), undefined);
  lines.push(b('OM:<a@b>\r\n'));
  assert.equal(lines.next(), 'MAIL FROM:<a@b>');
  assert.equal(lines.size, 0);
  lines.push(b('DATA\r\nfirst content'));
  assert.equal(lines.next(), 'DATA');
  assert.equal(lines.take().toString(), 'first content');
  lines.push(Buffer.alloc(MAX_LINE + 1, 0x78));
  assert.equal(lines.next(), TOO_LONG, 'no line end within the cap');
  lines.clear();
  lines.push(b(`${'x'.repeat(MAX_LINE + 1)}\r\n`));
  assert.equal(lines.next(), TOO_LONG, 'a line end past the cap');
  lines.clear();
  lines.push(b(`${'x'.repeat(MAX_LINE - 1)}\r\n`));
  assert.equal(lines.next(), 'x'.repeat(MAX_LINE - 1), 'at the cap');
});

/** xorshift32: the same inputs on every run. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** Cuts `buf` at random places. */
function cutAtRandom(buf: Buffer, rnd: () => number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = 1 + Math.floor(rnd() * 12);
    out.push(buf.subarray(at, at + n));
    at += n;
  }
  return out;
}

test('CommandLines: UTF-8 as sent, and a byte that is not UTF-8 kept (hasRawBytes), never U+FFFD', () => {
  const lines = new CommandLines();
  lines.push(
    Buffer.concat([
      Buffer.from('MAIL FROM:<jöran@x.test>\r\nRCPT TO:<b'),
      Buffer.from([0xf8, 0xc3]),
      Buffer.from('@x>\r\n'),
    ]),
  );
  assert.equal(lines.next(), 'MAIL FROM:<jöran@x.test>');
  const raw = lines.next() as string;
  assert.equal(raw, 'RCPT TO:<b\udcf8\udcc3@x>');
  assert.ok(hasRawBytes(raw) && !raw.includes('\ufffd'));
  assert.deepEqual(
    encodeWire(raw),
    Buffer.from([...Buffer.from('RCPT TO:<b'), 0xf8, 0xc3, ...Buffer.from('@x>')]),
  );
});

test('DotReader against a reference: random content, stuffed as a client would, cut at random', async () => {
  const rnd = random(0x5eed);
  const alphabet = ['a', '.', '\r', '\n', '\r\n', '\x00', '..'];
  const deadline = Date.now() + 5000;
  for (let round = 0; round < 3000 && Date.now() < deadline; round++) {
    let content = '';
    const len = Math.floor(rnd() * 30);
    for (let i = 0; i < len; i++) content += alphabet[Math.floor(rnd() * alphabet.length)];
    // The reference client: a dot that starts a line (after any LF) is doubled, then CRLF.CRLF.
    const stuffed = content.replace(/(^|\n)\./g, '$1..');
    const ends = content === '' || content.endsWith('\r\n');
    const wire = `${stuffed}${ends ? '' : '\r\n'}.\r\nRSET\r\n`;
    const expected = `${content}${ends ? '' : '\r\n'}`;
    const got = await read(cutAtRandom(b(wire), rnd));
    assert.deepEqual(got, { content: expected, rest: 'RSET\r\n' }, JSON.stringify(wire));
  }
});

/** The reference reader, line by line: where the message ends and what the session gets. */
function referenceRead(wire: string): { content: string; rest: string } {
  let content = '';
  let afterCRLF = true;
  let at = 0;
  while (at < wire.length) {
    const lf = wire.indexOf('\n', at);
    const line = lf < 0 ? wire.slice(at) : wire.slice(at, lf + 1);
    if (afterCRLF && line === '.\r\n') return { content, rest: wire.slice(at + 3) };
    content += line.startsWith('..') ? line.slice(1) : line;
    afterCRLF = line.endsWith('\r\n');
    at += line.length;
  }
  throw new Error('no end in the reference wire');
}

test('DotReader against a line-by-line reference: raw hostile bytes (bare CR/LF, lone dots), cut at random', async () => {
  const rnd = random(0xbad5eed);
  const alphabet = ['a', '.', '\r', '\n', '\r\n', '\x00', '.\r\n', '\n.\r\n', '\r.\r'];
  const deadline = Date.now() + 5000;
  for (let round = 0; round < 3000 && Date.now() < deadline; round++) {
    let raw = '';
    const len = Math.floor(rnd() * 30);
    for (let i = 0; i < len; i++) raw += alphabet[Math.floor(rnd() * alphabet.length)];
    const wire = `${raw}\r\n.\r\nRSET\r\n`;
    const got = await read(cutAtRandom(b(wire), rnd));
    assert.deepEqual(got, referenceRead(wire), JSON.stringify(wire));
  }
});

test('CommandLines against a reference: random lines and line ends, cut at random', () => {
  const rnd = random(0xc0ffee);
  const deadline = Date.now() + 5000;
  for (let round = 0; round < 2000 && Date.now() < deadline; round++) {
    const want: string[] = [];
    let wire = '';
    const n = 1 + Math.floor(rnd() * 8);
    for (let i = 0; i < n; i++) {
      let line = '';
      const len = Math.floor(rnd() * 20);
      for (let j = 0; j < len; j++) line += 'aZ .:<>\r\x00'[Math.floor(rnd() * 9)];
      // A CR that ends the line's text would be taken as part of its CRLF.
      line = line.replace(/\r+$/, '');
      want.push(line);
      wire += `${line}${rnd() < 0.5 ? '\r\n' : '\n'}`;
    }
    const lines = new CommandLines();
    const got: string[] = [];
    for (const chunk of cutAtRandom(b(wire), rnd)) {
      lines.push(chunk);
      for (let line = lines.next(); line !== undefined; line = lines.next()) {
        assert.notEqual(line, TOO_LONG);
        got.push(line as string);
      }
    }
    assert.deepEqual(got, want, JSON.stringify(wire));
    assert.equal(lines.size, 0);
  }
});
