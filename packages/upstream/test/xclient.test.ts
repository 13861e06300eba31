// XCLIENT commands (Postfix XCLIENT_README): offered attributes only, xtext values, IPV6: addresses,
// [UNAVAILABLE] for unknowns, and every command line within 512 octets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientIdentity } from '../src/types.js';
import { xclientCommands } from '../src/xclient.js';
import { xtextEncode } from '../src/xtext.js';

const ALL = 'ADDR PORT PROTO HELO NAME LOGIN DESTADDR DESTPORT';
const client: ClientIdentity = {
  address: '::ffff:192.0.2.7',
  port: 41000,
  localAddress: '2001:db8::25',
  localPort: 25,
  helo: 'mail.example',
  name: 'mail.example.com',
  login: 'jörg+x=y',
  proto: 'ESMTP',
};

describe('xtext', () => {
  it('encodes +, =, space, controls and non-ASCII bytes as +HH', () => {
    assert.equal(xtextEncode('a+b=c d\r\n~!'), 'a+2Bb+3Dc+20d+0D+0A~!');
    assert.equal(xtextEncode('é'), '+C3+A9');
    assert.equal(xtextEncode('[UNAVAILABLE]'), '[UNAVAILABLE]');
  });
});

describe('xclientCommands', () => {
  it('sends every offered attribute, IPv6 as IPV6:, IPv4-mapped as IPv4', () => {
    assert.deepEqual(xclientCommands(ALL, client), [
      'XCLIENT PORT=41000 PROTO=ESMTP HELO=mail.example LOGIN=j+C3+B6rg+2Bx+3Dy DESTADDR=IPV6:2001:db8::25 ' +
        'DESTPORT=25 ADDR=192.0.2.7 NAME=mail.example.com',
    ]);
  });

  it('sends only what the backend listed, in any case, and [UNAVAILABLE] for unknown values', () => {
    const bare: ClientIdentity = { address: 'nowhere', port: 1, localAddress: '127.0.0.1', localPort: 25 };
    assert.deepEqual(xclientCommands('name addr login', bare), [
      'XCLIENT LOGIN=[UNAVAILABLE] ADDR=[UNAVAILABLE] NAME=[UNAVAILABLE]',
    ]);
    assert.deepEqual(xclientCommands('', bare), []);
    assert.deepEqual(xclientCommands('FORWARD_FOO', bare), []);
  });

  it('splits over several commands so no line exceeds 512 octets with CRLF', () => {
    const helo = `${'h'.repeat(150)}+${'='.repeat(20)}`;
    const cmds = xclientCommands(ALL, { ...client, helo, name: 'n'.repeat(250), login: 'l'.repeat(200) });
    assert.ok(cmds.length >= 2, `split into ${cmds.length}`);
    for (const c of cmds) {
      assert.ok(c.length + 2 <= 512, `${c.length + 2} octets`);
      assert.match(c, /^XCLIENT( [A-Z]+=\S+)+$/);
    }
    const sent = cmds.flatMap((c) => c.split(' ').slice(1));
    assert.deepEqual(
      sent.map((a) => a.split('=')[0]),
      ['PORT', 'PROTO', 'HELO', 'LOGIN', 'DESTADDR', 'DESTPORT', 'ADDR', 'NAME'],
    );
    // Postfix re-checks authorisation against the overridden name and address: they must come last.
    assert.match(cmds.at(-1)!, / ADDR=192\.0\.2\.7 NAME=n+$/);
    assert.doesNotMatch(cmds.slice(0, -1).join(' '), / (ADDR|NAME)=/);
    assert.ok(sent.includes(`HELO=${'h'.repeat(150)}+2B${'+3D'.repeat(20)}`));
  });

  it('sends a value longer than 255 characters (encoded) as [UNAVAILABLE] rather than cut short', () => {
    assert.deepEqual(xclientCommands('LOGIN', { ...client, login: 'x'.repeat(255) }), [
      `XCLIENT LOGIN=${'x'.repeat(255)}`,
    ]);
    assert.deepEqual(xclientCommands('LOGIN', { ...client, login: 'x'.repeat(256) }), [
      'XCLIENT LOGIN=[UNAVAILABLE]',
    ]);
    assert.deepEqual(xclientCommands('LOGIN', { ...client, login: '+'.repeat(86) }), [
      'XCLIENT LOGIN=[UNAVAILABLE]',
    ]);
    const cmds = xclientCommands('HELO NAME', { ...client, helo: '+'.repeat(200) });
    assert.deepEqual(cmds, ['XCLIENT HELO=[UNAVAILABLE] NAME=mail.example.com']);
    const huge = xclientCommands('ADDR NAME', {
      ...client,
      address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      name: 'n'.repeat(460),
    });
    assert.deepEqual(huge, ['XCLIENT ADDR=IPV6:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff NAME=[UNAVAILABLE]']);
  });
});
