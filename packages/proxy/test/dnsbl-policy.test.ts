// Pure parts of DNSBL scoring and the policy protocol: code filters, query names, the encoding of a
// policy request and what each action means for the client.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileCode, queryName } from '../src/shaping/dnsbl.js';
import { encodeRequest, verdictOf } from '../src/shaping/policy-client.js';

const T = { timeout: 5_000 };

test('DNSBL return-code filters like postscreen_dnsbl_sites', T, () => {
  const f = compileCode('127.0.0.[2..11]');
  assert.equal(f('127.0.0.2'), true);
  assert.equal(f('127.0.0.11'), true);
  assert.equal(f('127.0.0.12'), false);
  assert.equal(f('127.0.1.2'), false);
  const g = compileCode('127.0.[1;3..4].2');
  assert.deepEqual(['127.0.1.2', '127.0.2.2', '127.0.4.2'].map(g), [true, false, true]);
  assert.equal(compileCode('127.0.0.2')('127.0.0.2'), true);
});

test('query names: reversed octets, reversed nibbles for IPv6', T, () => {
  assert.equal(queryName('192.0.2.99', 'zen.example'), '99.2.0.192.zen.example');
  assert.equal(queryName('::ffff:127.0.0.2', 'bl.test'), '2.0.0.127.bl.test');
  assert.equal(
    queryName('2001:db8::1', 'bl.test'),
    '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test',
  );
});

test('policy requests: name=value lines, a blank line, no line breaks inside values', T, () => {
  assert.equal(
    encodeRequest({ request: 'smtpd_access_policy', sender: 'a@b\r\nx=y', size: 10, skipped: undefined }),
    'request=smtpd_access_policy\nsender=a@b  x=y\nsize=10\n\n',
  );
});

test('policy actions become replies, or let the backend decide', T, () => {
  const ctx = '<bob@example.test>: Recipient address rejected';
  assert.deepEqual(verdictOf('DEFER_IF_PERMIT Greylisted, see http://x/', ctx), {
    kind: 'reply',
    action: 'DEFER_IF_PERMIT Greylisted, see http://x/',
    reply: { code: 450, enhanced: '4.7.1', lines: [`4.7.1 ${ctx}: Greylisted, see http://x/`] },
  });
  const rejected = verdictOf('REJECT', ctx);
  assert.equal(rejected.kind === 'reply' && rejected.reply.lines[0], `5.7.1 ${ctx}: Access denied`);
  const numeric = verdictOf('550 5.7.26 Unauthenticated mail', ctx);
  assert.deepEqual(numeric.kind === 'reply' && numeric.reply, {
    code: 550,
    enhanced: '5.7.26',
    lines: [`5.7.26 ${ctx}: Unauthenticated mail`],
  });
  const fourxx = verdictOf('421 try later', ctx);
  assert.equal(fourxx.kind === 'reply' && fourxx.reply.lines[0], `4.7.1 ${ctx}: try later`);
  const defer = verdictOf('defer', ctx);
  assert.equal(defer.kind === 'reply' && defer.reply.code, 450);
  for (const a of ['OK', 'DUNNO', 'dunno', 'PREPEND X-Greylist: delayed', 'DEFER_IF_REJECT x', 'WARN hm']) {
    assert.equal(verdictOf(a, ctx).kind, 'continue', a);
  }
});
