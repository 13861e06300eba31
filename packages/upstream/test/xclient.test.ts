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
      'XCLIENT ADDR=192.0.2.7 PORT=41000 PROTO=ESMTP HELO=mail.example NAME=mail.example.com ' +
        'LOGIN=j+C3+B6rg+2Bx+3Dy DESTADDR=IPV6:2001:db8::25 DESTPORT=25',
    ]);
  });

  it('sends only what the backend listed, in any case, and [UNAVAILABLE] for unknown values', () => {
    const bare: ClientIdentity = { address: 'nowhere', port: 1, localAddress: '127.0.0.1', localPort: 25 };
    assert.deepEqual(xclientCommands('name addr login', bare), [
      'XCLIENT ADDR=[UNAVAILABLE] NAME=[UNAVAILABLE] LOGIN=[UNAVAILABLE]',
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
      ['ADDR', 'PORT', 'PROTO', 'HELO', 'NAME', 'LOGIN', 'DESTADDR', 'DESTPORT'],
    );
    assert.ok(sent.includes(`HELO=${'h'.repeat(150)}+2B${'+3D'.repeat(20)}`));
  });

  it('sends a value too long for any command line as [UNAVAILABLE] rather than cut short', () => {
    const cmds = xclientCommands('HELO NAME', { ...client, helo: '+'.repeat(200) });
    assert.deepEqual(cmds, ['XCLIENT HELO=[UNAVAILABLE] NAME=mail.example.com']);
  });
});
