// PROXY v1/v2 parsing: every accepted form with its addresses, and every malformed, truncated or
// oversized form refused with a stable code, never a throw (bounded random input too).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CidrList, clientPrefix } from '../src/shaping/cidr.js';
import {
  PROXY_V1_MAX,
  PROXY_V2_MAX_PAYLOAD,
  PROXY_V2_SIGNATURE,
  parseProxyHeader,
  startsWithProxySignature,
} from '../src/shaping/proxy-header.js';

const T = { timeout: 10_000 };

function v2(cmd: number, fam: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | cmd;
  head[1] = fam;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, body]);
}

function tcp4(src: string, dst: string, sp: number, dp: number, tlv = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src.split('.').map(Number)).copy(b, 0);
  Buffer.from(dst.split('.').map(Number)).copy(b, 4);
  b.writeUInt16BE(sp, 8);
  b.writeUInt16BE(dp, 10);
  return v2(1, 0x11, Buffer.concat([b, tlv]));
}

test('v1 TCP4, TCP6 and UNKNOWN, with what follows left alone', T, () => {
  const line = 'PROXY TCP4 192.0.2.7 10.0.0.1 51000 25\r\n';
  const r = parseProxyHeader(Buffer.from(`${line}EHLO x\r\n`));
  assert.deepEqual(r, {
    state: 'done',
    version: 1,
    length: line.length,
    source: { address: '192.0.2.7', port: 51000 },
    destination: { address: '10.0.0.1', port: 25 },
  });
  const six = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n'));
  assert.equal(six.state === 'done' && six.source?.address, '2001:db8::7');
  const unknown = parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 3 4\r\n'));
  assert.deepEqual(unknown, { state: 'done', version: 1, length: 35 });
});

test('v1 refused: wrong family, bad address or port, no CRLF within 107 bytes, control bytes', T, () => {
  const bad = (s: string) => parseProxyHeader(Buffer.from(s, 'latin1'));
  assert.deepEqual(bad('PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n'), {
    state: 'error',
    code: 'PROXY_UNSUPPORTED',
    reason: 'v1 protocol "UDP4"',
  });
  assert.equal((bad('PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad('PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad('PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad('PROXY TCP4 1.2.3.4 1.2.3.4 025 2\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad('PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad('PROXY TCP4 1.2.3.4\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad('PROXY TCP4 1.2.3.4 1.2.\x01.4 1 2\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((bad(`PROXY TCP4 ${'1'.repeat(PROXY_V1_MAX)}`) as { code: string }).code, 'PROXY_OVERSIZED');
  assert.equal((bad('EHLO client.example\r\n') as { code: string }).code, 'PROXY_MALFORMED');
  assert.deepEqual(bad('PROXY TCP4 192.0.2.7 10.0'), { state: 'more' }, 'a truncated line waits for more');
  assert.deepEqual(bad('PRO'), { state: 'more' });
});

test('v2 TCP4 and TCP6 with TLVs, LOCAL, UNSPEC', T, () => {
  const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]);
  const header = tcp4('203.0.113.9', '10.0.0.1', 40000, 25, tlv);
  const r = parseProxyHeader(Buffer.concat([header, Buffer.from('EHLO')]));
  assert.deepEqual(r, {
    state: 'done',
    version: 2,
    length: header.length,
    source: { address: '203.0.113.9', port: 40000 },
    destination: { address: '10.0.0.1', port: 25 },
  });
  const b6 = Buffer.alloc(36);
  b6.write('20010db8000000000000000000000007', 0, 'hex');
  b6.write('20010db8000000000000000000000001', 16, 'hex');
  b6.writeUInt16BE(1234, 32);
  b6.writeUInt16BE(25, 34);
  const six = parseProxyHeader(v2(1, 0x21, b6));
  assert.equal(six.state === 'done' && six.source?.address, '2001:db8::7');
  assert.deepEqual(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0))), { state: 'done', version: 2, length: 16 });
  assert.deepEqual(parseProxyHeader(v2(1, 0x00, Buffer.alloc(4))), { state: 'done', version: 2, length: 20 });
});

test('v2 refused or waiting: truncated, oversized, bad version, command, transport, short block', T, () => {
  const full = tcp4('203.0.113.9', '10.0.0.1', 1, 25);
  for (let n = 1; n < full.length; n++) {
    assert.deepEqual(parseProxyHeader(full.subarray(0, n)), { state: 'more' }, `${n} bytes`);
  }
  const huge = v2(1, 0x11, Buffer.alloc(12));
  huge.writeUInt16BE(PROXY_V2_MAX_PAYLOAD + 1, 14);
  assert.equal((parseProxyHeader(huge) as { code: string }).code, 'PROXY_OVERSIZED');
  const v3 = Buffer.from(full);
  v3[12] = 0x31;
  assert.equal((parseProxyHeader(v3) as { code: string }).code, 'PROXY_UNSUPPORTED');
  const cmd = Buffer.from(full);
  cmd[12] = 0x22;
  assert.equal((parseProxyHeader(cmd) as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal(
    (parseProxyHeader(v2(1, 0x12, Buffer.alloc(12))) as { code: string }).code,
    'PROXY_UNSUPPORTED',
  );
  assert.equal((parseProxyHeader(v2(1, 0x11, Buffer.alloc(8))) as { code: string }).code, 'PROXY_MALFORMED');
  assert.equal((parseProxyHeader(v2(1, 0x21, Buffer.alloc(20))) as { code: string }).code, 'PROXY_MALFORMED');
  const sig = Buffer.from(full);
  sig[5] = 0x0e;
  assert.equal((parseProxyHeader(sig) as { code: string }).code, 'PROXY_MALFORMED');
});

test('random bytes never throw and never claim more than arrived (bounded fuzz)', T, () => {
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const prefixes = [Buffer.from('PROXY '), PROXY_V2_SIGNATURE, Buffer.alloc(0)];
  for (let i = 0; i < 20_000; i++) {
    const len = rnd() % 300;
    const body = Buffer.alloc(len);
    for (let j = 0; j < len; j++) body[j] = rnd() & 0xff;
    const buf = Buffer.concat([prefixes[i % 3]!, body]);
    const r = parseProxyHeader(buf);
    if (r.state === 'done') assert.ok(r.length <= buf.length, `claimed ${r.length} of ${buf.length}`);
  }
});

test('signatures, CIDR lists and client prefixes', T, () => {
  assert.equal(startsWithProxySignature(Buffer.from('PROXY TCP4')), true);
  assert.equal(startsWithProxySignature(Buffer.from('PROX')), false);
  assert.equal(startsWithProxySignature(PROXY_V2_SIGNATURE), true);
  assert.equal(startsWithProxySignature(Buffer.from('EHLO x\r\n')), false);
  const list = new CidrList(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7/32']);
  assert.equal(list.has('10.1.2.3'), true);
  assert.equal(list.has('::ffff:10.1.2.3'), true);
  assert.equal(list.has('11.0.0.1'), false);
  assert.equal(list.has('2001:db8:1::5'), true);
  assert.equal(list.has('192.0.2.8'), false);
  assert.equal(new CidrList([]).has('10.0.0.1'), false);
  assert.equal(clientPrefix('198.51.100.77'), '198.51.100.0/24');
  assert.equal(clientPrefix('::ffff:198.51.100.77'), '198.51.100.0/24');
  assert.equal(clientPrefix('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(clientPrefix('2001:db8::1'), '2001:db8::/64');
});
