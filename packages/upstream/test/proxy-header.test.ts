// PROXY protocol headers byte for byte (HAProxy proxy-protocol.txt), both versions and families.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { proxyHeader } from '../src/proxy-header.js';
import type { ClientIdentity } from '../src/types.js';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const id = (address: string, localAddress: string, port = 40000, localPort = 25): ClientIdentity => ({
  address,
  port,
  localAddress,
  localPort,
});

describe('proxyHeader', () => {
  it('v1 for IPv4, IPv6, IPv4-mapped and mixed families', () => {
    const v1 = (i: ClientIdentity) => proxyHeader('v1', i).toString('latin1');
    assert.equal(v1(id('192.0.2.1', '198.51.100.2')), 'PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\n');
    assert.equal(
      v1(id('2001:DB8::1', '2001:db8::2', 1, 2525)),
      'PROXY TCP6 2001:db8::1 2001:db8::2 1 2525\r\n',
    );
    assert.equal(
      v1(id('::ffff:192.0.2.1', '::ffff:198.51.100.2')),
      'PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\n',
    );
    assert.equal(v1(id('192.0.2.1', '2001:db8::2')), 'PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 40000 25\r\n');
    assert.equal(v1(id('fe80::1%eth0', '::1')), 'PROXY TCP6 fe80::1 ::1 40000 25\r\n');
    assert.equal(v1(id('not-an-ip', '::1')), 'PROXY UNKNOWN\r\n');
    assert.equal(v1(id('192.0.2.1', '198.51.100.2', 70000)), 'PROXY UNKNOWN\r\n');
    const longest = v1(
      id('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535, 65535),
    );
    assert.ok(longest.length <= 107, 'v1 headers fit in 107 bytes');
  });

  it('v2 TCP4 bytes exactly', () => {
    assert.deepEqual(
      proxyHeader('v2', id('::ffff:192.0.2.1', '198.51.100.2')),
      Buffer.concat([SIG, Buffer.from('2111000c' + 'c0000201' + 'c6336402' + '9c40' + '0019', 'hex')]),
    );
  });

  it('v2 TCP6 bytes exactly, embedded IPv4 notation included', () => {
    assert.deepEqual(
      proxyHeader('v2', id('2001:db8::1', '64:ff9b::192.0.2.33', 443, 587)),
      Buffer.concat([
        SIG,
        Buffer.from('21210024', 'hex'),
        Buffer.from('20010db8000000000000000000000001', 'hex'),
        Buffer.from('0064ff9b0000000000000000c0000221', 'hex'),
        Buffer.from('01bb024b', 'hex'),
      ]),
    );
  });

  it('v2 with unknown addresses says AF_UNSPEC', () => {
    assert.deepEqual(
      proxyHeader('v2', id('unix-socket', '::1')),
      Buffer.concat([SIG, Buffer.from('21000000', 'hex')]),
    );
  });
});
