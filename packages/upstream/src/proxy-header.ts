// The PROXY protocol header (HAProxy proxy-protocol.txt) we send first thing on a backend connection
// when the pool asks for it, so the backend sees the real client: v1 is one text line, v2 binary.
// Source is the client, destination the listener it connected to.
import { parseIp } from './ip-address.js';
import type { ClientIdentity } from './types.js';

const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const V2_PROXY = 0x21; // version 2, command PROXY
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;
const V2_UNSPEC = 0x00;

interface Endpoints {
  family: 4 | 6;
  src: { bytes: Buffer; text: string };
  dst: { bytes: Buffer; text: string };
}

export function proxyHeader(version: 'v1' | 'v2', id: ClientIdentity): Buffer {
  const ends = endpoints(id);
  if (version === 'v1') {
    if (!ends) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    const proto = ends.family === 4 ? 'TCP4' : 'TCP6';
    return Buffer.from(
      `PROXY ${proto} ${ends.src.text} ${ends.dst.text} ${id.port} ${id.localPort}\r\n`,
      'latin1',
    );
  }
  if (!ends) {
    // AF_UNSPEC: the receiver uses the real connection endpoints (proxy-protocol.txt 2.2).
    return Buffer.concat([V2_SIGNATURE, Buffer.from([V2_PROXY, V2_UNSPEC, 0, 0])]);
  }
  const addrLen = ends.family === 4 ? 12 : 36;
  const head = Buffer.from([V2_PROXY, ends.family === 4 ? V2_TCP4 : V2_TCP6, 0, 0]);
  head.writeUInt16BE(addrLen, 2);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(id.port, 0);
  ports.writeUInt16BE(id.localPort, 2);
  return Buffer.concat([V2_SIGNATURE, head, ends.src.bytes, ends.dst.bytes, ports]);
}

/** Both ends in one family (IPv4 is mapped into IPv6 when the other end is IPv6), or undefined. */
function endpoints(id: ClientIdentity): Endpoints | undefined {
  const src = parseIp(id.address);
  const dst = parseIp(id.localAddress);
  if (!src || !dst || !validPort(id.port) || !validPort(id.localPort)) return undefined;
  if (src.family === dst.family) return { family: src.family, src, dst };
  const as6 = (a: typeof src) =>
    a.family === 6
      ? a
      : {
          bytes: Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), a.bytes]),
          text: `::ffff:${a.text}`,
        };
  return { family: 6, src: as6(src), dst: as6(dst) };
}

function validPort(p: number): boolean {
  return Number.isInteger(p) && p >= 0 && p <= 65535;
}
