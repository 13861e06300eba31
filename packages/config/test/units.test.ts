// Value syntaxes: what each accepts, what it turns it into, and the message for what it refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCidr, parseDuration, parseHostPort, parseSize } from '../src/units.js';

const T = { timeout: 5_000 };

test('durations become milliseconds; plain numbers already are', T, () => {
  const cases: [unknown, number][] = [
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    [250, 250],
    ['250', 250],
    [0, 0],
  ];
  for (const [input, ms] of cases)
    assert.deepEqual(parseDuration(input), { ok: true, value: ms }, String(input));
});

test('bad durations are refused with an example of the syntax', T, () => {
  for (const input of ['30 seconds', '5min', '-1s', '1d', '', 'm', 1.5, -3, true]) {
    const r = parseDuration(input);
    assert.equal(r.ok, false, String(input));
    assert.match(r.ok ? '' : r.message, /expected a duration like 500ms, 30s, 5m or 1h/);
  }
  const tooLong = parseDuration('600h');
  assert.equal(tooLong.ok, false, 'longer than setTimeout can wait');
  assert.match(tooLong.ok ? '' : tooLong.message, /too long/);
});

test('sizes: KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024, plain numbers are bytes', T, () => {
  const cases: [unknown, number][] = [
    ['50MB', 50_000_000],
    ['512KB', 512_000],
    ['1GB', 1_000_000_000],
    ['10MiB', 10 * 1024 * 1024],
    ['4KiB', 4096],
    ['2GiB', 2 * 1024 ** 3],
    ['1.5MB', 1_500_000],
    ['25 MB', 25_000_000],
    ['100B', 100],
    ['2048', 2048],
    [1000, 1000],
  ];
  for (const [input, bytes] of cases)
    assert.deepEqual(parseSize(input), { ok: true, value: bytes }, String(input));
  for (const input of ['50 megs', '10mb', '1TB', 'MB', '-5MB', 1.5]) {
    const r = parseSize(input);
    assert.equal(r.ok, false, String(input));
    assert.match(r.ok ? '' : r.message, /expected a size like 50MB/);
  }
});

test('host:port: names, IPv4 and bracketed IPv6; the host comes back without brackets', T, () => {
  assert.deepEqual(parseHostPort('mx1.example.com:25'), {
    ok: true,
    value: { host: 'mx1.example.com', port: 25 },
  });
  assert.deepEqual(parseHostPort('10.1.0.5:2525'), { ok: true, value: { host: '10.1.0.5', port: 2525 } });
  assert.deepEqual(parseHostPort('[::1]:25'), { ok: true, value: { host: '::1', port: 25 } });
  assert.deepEqual(parseHostPort('[2001:db8::5]:587'), {
    ok: true,
    value: { host: '2001:db8::5', port: 587 },
  });
  assert.deepEqual(parseHostPort('0.0.0.0:0', true), { ok: true, value: { host: '0.0.0.0', port: 0 } });
});

test('bad addresses say what is wrong', T, () => {
  const cases: [string, RegExp][] = [
    ['mx.example.com', /expected host:port/],
    ['::1:25', /IPv6 addresses in brackets/],
    ['[::g]:25', /invalid IPv6 address/],
    ['10.0.0.1:0', /port must be 1-65535/],
    ['10.0.0.1:65536', /port must be 1-65535/],
    ['10.0.0.1:smtp', /port must be 1-65535/],
    ['bad host:25', /invalid host/],
  ];
  for (const [input, message] of cases) {
    const r = parseHostPort(input);
    assert.equal(r.ok, false, input);
    assert.match(r.ok ? '' : r.message, message, input);
  }
});

test('CIDRs: a bare address is one host', T, () => {
  assert.deepEqual(parseCidr('10.0.0.0/8'), { ok: true, value: '10.0.0.0/8' });
  assert.deepEqual(parseCidr('192.168.1.7'), { ok: true, value: '192.168.1.7/32' });
  assert.deepEqual(parseCidr('fd00::/8'), { ok: true, value: 'fd00::/8' });
  assert.deepEqual(parseCidr('::1'), { ok: true, value: '::1/128' });
  for (const [input, message] of [
    ['10.0.0.0/33', /prefix length must be 0-32/],
    ['fd00::/129', /prefix length must be 0-128/],
    ['10.0.0/8', /expected an address or CIDR/],
    ['10.0.0.0/8/9', /expected an address or CIDR/],
  ] as const) {
    const r = parseCidr(input);
    assert.match(r.ok ? 'accepted' : r.message, message, input);
  }
});
