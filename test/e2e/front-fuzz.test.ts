// A bounded fuzz of the command parser and the front door (fast-check, seeded; issue 11): mutated
// valid sessions (bytes flipped, CR/LF/NUL/8-bit inserted, lines cut, doubled or made long), AUTH-like
// lines and mutated PROXY v1/v2 headers on a trusted listener, each sent in random TCP segments and
// then half-closed or reset. The node never crashes, everything it writes is a well-formed SMTP reply,
// and a normal session on the same node delivers meanwhile. SMTP_LB_FUZZ_LONG=1 runs it much longer
// (for CI nights); the short run is part of npm test.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCaptureBackend } from '@smtp-lb/testkit';
import fc from 'fast-check';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const LONG = process.env.SMTP_LB_FUZZ_LONG === '1';
const RUNS = { seed: 4242, numRuns: LONG ? 5000 : 150, interruptAfterTimeLimit: LONG ? 1_800_000 : 25_000 };

const VALID = [
  'EHLO client.test',
  'HELO client.test',
  'MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME',
  'MAIL FROM:<>',
  'RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.test',
  'RCPT TO:<postmaster>',
  'DATA',
  'Subject: x',
  '',
  'body',
  '.',
  'RSET',
  'NOOP',
  'VRFY b',
  'HELP',
  'STARTTLS',
  'AUTH PLAIN AGEAYg==',
  'AUTH LOGIN',
  'YQ==',
  '*',
  'XCLIENT ADDR=1.2.3.4',
  'BDAT 10 LAST',
  'GET / HTTP/1.1',
  'CONNECT mx.example.test:25 HTTP/1.1',
  'QUIT',
];

const mutation = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.constantFrom('\r', '\n', '\x00', '\xff', '\xe9', ':', '<', '>', '=', ' ', '\t', '.', '\x1b'),
  }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('long' as const), n: fc.integer({ min: 100, max: 20_000 }) }),
);

const line = fc.tuple(fc.constantFrom(...VALID), fc.array(mutation, { maxLength: 3 })).map(([text, muts]) => {
  let b = Buffer.from(text, 'latin1');
  for (const m of muts) {
    if (m.op === 'long') b = Buffer.concat([b, Buffer.alloc(m.n, 'x')]);
    else if (b.length === 0) continue;
    else if (m.op === 'flip') b[m.at % b.length] = m.byte;
    else if (m.op === 'insert') {
      const at = m.at % (b.length + 1);
      b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes, 'latin1'), b.subarray(at)]);
    } else b = b.subarray(0, m.at % b.length);
  }
  return Buffer.concat([b, Buffer.from('\r\n')]);
});

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const proxyHeader = fc.oneof(
  fc.constant(Buffer.from('PROXY TCP4 192.0.2.7 127.0.0.1 4000 25\r\n')),
  fc.constant(Buffer.from('PROXY UNKNOWN\r\n')),
  fc
    .tuple(
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 40 }),
    )
    .map(([ver, fam, rest]) => {
      const h = Buffer.alloc(16);
      SIG.copy(h, 0);
      h[12] = ver;
      h[13] = fam;
      h.writeUInt16BE(rest.length, 14);
      return Buffer.concat([h, Buffer.from(rest)]);
    }),
  fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.concat([Buffer.from('PROXY '), Buffer.from(a)])),
);

/** Sends `bytes` in segments; ends (half-close) or resets; resolves with all the node wrote. */
function exchange(port: number, bytes: Buffer, cuts: number[], reset: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const s: Socket = connect({ port, host: '127.0.0.1' });
    s.setNoDelay(true);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the node neither answered to the end nor closed: ${Buffer.concat(got)}`));
    }, 15_000);
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
    s.once('connect', async () => {
      const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      for (const k of [...at, bytes.length]) {
        if (k <= from) continue;
        s.write(bytes.subarray(from, k));
        from = k;
        await sleep(1);
      }
      if (reset) s.resetAndDestroy();
      else s.end();
    });
  });
}

/** Every line is `NNN-text` or `NNN text` with a 2xx-5xx code, a multi-line reply keeps its code. */
function assertWellFormed(out: Buffer): void {
  const text = out.toString('latin1');
  if (text === '') return;
  assert.ok(text.endsWith('\r\n'), `ends with CRLF: ${JSON.stringify(text.slice(-80))}`);
  let open: string | undefined;
  for (const l of text.slice(0, -2).split('\r\n')) {
    assert.match(l, /^[2-5]\d\d([ -]|$)/, `a reply line: ${JSON.stringify(l)}`);
    assert.doesNotMatch(l, /[\r\n\x00]/, `no CR, LF or NUL inside: ${JSON.stringify(l)}`);
    if (open !== undefined) assert.equal(l.slice(0, 3), open, 'a multi-line reply keeps its code');
    open = l[3] === '-' ? l.slice(0, 3) : undefined;
  }
  assert.equal(open, undefined, 'the last reply is complete');
}

async function normalSession(port: number): Promise<void> {
  const c = await SmtpDialog.open(port);
  try {
    assert.equal((await c.read()).code, 220);
    assert.equal((await c.cmd('EHLO ok.test')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    assert.equal((await c.cmd('Subject: fine\r\n\r\nstill working\r\n.')).code, 250);
    assert.equal((await c.cmd('QUIT')).code, 221);
  } finally {
    c.close();
  }
}

describe('front fuzz: the node survives and answers in SMTP', { timeout: LONG ? 7_200_000 : 240_000 }, () => {
  const cleanup = cleanupAfterAll();

  test('mutated sessions and PROXY headers; a normal session delivers meanwhile', async () => {
    const backend = await startCaptureBackend();
    cleanup.push(() => backend.close());
    const lb = await startNode(`
node: { id: fuzz }
listeners:
  - name: plain
    listen: 127.0.0.1:0
    hostname: mx.test
    pool: default
    timeouts: { idle: 3s, command: 2s }
  - name: proxied
    listen: 127.0.0.1:0
    hostname: mx.test
    pool: default
    timeouts: { idle: 3s, command: 2s }
    proxyProtocol: { trusted: [127.0.0.0/8], timeout: 1s }
pools:
  default:
    static: [{ address: ${backend.address} }]
    tls: none
admin: { listen: 127.0.0.1:0 }
log: { level: warn }
`);
    cleanup.push(() => lb.stop());
    const plain = lb.node.addresses.get('plain')!.port;
    const proxied = lb.node.addresses.get('proxied')!.port;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.option(proxyHeader, { nil: undefined }),
        fc.array(line, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        fc.boolean(),
        async (header, lines, cuts, reset) => {
          runs++;
          const bytes = Buffer.concat([...(header ? [header] : []), ...lines]);
          const out = await exchange(header ? proxied : plain, bytes, cuts, reset);
          if (!reset) assertWellFormed(out);
          if (runs % 25 === 0) await normalSession(plain);
        },
      ),
      RUNS,
    );
    await normalSession(plain);
    assert.ok(runs > 0);
  });
});
