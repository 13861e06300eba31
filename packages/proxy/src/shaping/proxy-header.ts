// PROXY protocol v1 and v2 (HAProxy's proxy-protocol.txt), read from the first bytes of a connection
// that a trusted TCP load balancer opened. Pure: it looks at what arrived so far and says "need
// more", "bad header" or "done, this many bytes, this client". Every length is bounded by what
// arrived and by fixed caps; nothing is guessed.
import { isIPv4, isIPv6, SocketAddress } from 'node:net';

/** v1: "PROXY TCP6 <39> <39> 65535 65535\r\n" is 104 bytes; the spec caps a line at 107. */
export const PROXY_V1_MAX = 107;
/** v2 addresses plus TLVs. HAProxy and the cloud balancers send a few hundred bytes at most. */
export const PROXY_V2_MAX_PAYLOAD = 1024;
export const PROXY_V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
export const PROXY_V1_PREFIX = Buffer.from('PROXY ', 'latin1');

export interface Endpoint {
  address: string;
  port: number;
}

export type ProxyHeaderErrorCode = 'PROXY_MALFORMED' | 'PROXY_OVERSIZED' | 'PROXY_UNSUPPORTED';

export type ProxyParse =
  | { state: 'more' }
  | { state: 'error'; code: ProxyHeaderErrorCode; reason: string }
  | {
      state: 'done';
      version: 1 | 2;
      /** Header bytes; whatever follows is the client's own data. */
      length: number;
      /** Absent for v1 UNKNOWN, v2 LOCAL and non-TCP families: the connection's own addresses apply. */
      source?: Endpoint;
      destination?: Endpoint;
    };

const more = { state: 'more' } as const;
const fail = (code: ProxyHeaderErrorCode, reason: string): ProxyParse => ({ state: 'error', code, reason });

/** `buf` starts with a whole PROXY signature: "PROXY " (v1) or the 12-byte v2 signature. */
export function startsWithProxySignature(buf: Buffer): boolean {
  return (
    (buf.length >= PROXY_V1_PREFIX.length &&
      buf.subarray(0, PROXY_V1_PREFIX.length).equals(PROXY_V1_PREFIX)) ||
    (buf.length >= PROXY_V2_SIGNATURE.length && buf.subarray(0, 12).equals(PROXY_V2_SIGNATURE))
  );
}

export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return more;
  if (buf[0] === PROXY_V1_PREFIX[0]) return parseV1(buf);
  if (buf[0] === PROXY_V2_SIGNATURE[0]) {
    const n = Math.min(buf.length, 12);
    if (!buf.subarray(0, n).equals(PROXY_V2_SIGNATURE.subarray(0, n))) {
      return fail('PROXY_MALFORMED', 'neither a v1 nor a v2 signature');
    }
    return parseV2(buf);
  }
  return fail('PROXY_MALFORMED', 'no PROXY header');
}

function port(text: string): number | undefined {
  // Decimal 0..65535, no sign, no leading zeros (a leading zero is how "010" smuggling starts).
  if (!/^(?:0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function parseV1(buf: Buffer): ProxyParse {
  const n = Math.min(buf.length, PROXY_V1_PREFIX.length);
  if (!buf.subarray(0, n).equals(PROXY_V1_PREFIX.subarray(0, n)))
    return fail('PROXY_MALFORMED', 'bad v1 prefix');
  const window = buf.subarray(0, PROXY_V1_MAX);
  const end = window.indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (buf.length >= PROXY_V1_MAX)
      return fail('PROXY_OVERSIZED', `v1 line longer than ${PROXY_V1_MAX} bytes`);
    // A lone LF before the CRLF can only be garbage.
    if (window.includes(0x0a)) return fail('PROXY_MALFORMED', 'v1 line not ended by CRLF');
    return more;
  }
  const line = window.toString('latin1', 0, end);
  if (!/^[\x20-\x7e]*$/.test(line)) return fail('PROXY_MALFORMED', 'v1 line has control or 8-bit bytes');
  const parts = line.split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') return { state: 'done', version: 1, length };
  if (parts.length !== 6) return fail('PROXY_MALFORMED', 'v1 line needs 6 fields');
  const [, proto, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const check = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : undefined;
  if (!check) return fail('PROXY_UNSUPPORTED', `v1 protocol ${JSON.stringify(proto.slice(0, 16))}`);
  const sp = port(sport);
  const dp = port(dport);
  if (!check(src) || !check(dst) || sp === undefined || dp === undefined) {
    return fail('PROXY_MALFORMED', `v1 ${proto} addresses or ports invalid`);
  }
  return {
    state: 'done',
    version: 1,
    length,
    source: { address: src, port: sp },
    destination: { address: dst, port: dp },
  };
}

function ipv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // The canonical text form (inet_ntop), as a socket would report it: 2001:db8::1, ::ffff:1.2.3.4.
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < 16) return more;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return fail('PROXY_UNSUPPORTED', `v2 version ${verCmd >> 4}`);
  const command = verCmd & 0x0f;
  if (command > 1) return fail('PROXY_MALFORMED', `v2 command ${command}`);
  const famProto = buf[13]!;
  const payload = buf.readUInt16BE(14);
  if (payload > PROXY_V2_MAX_PAYLOAD) {
    return fail('PROXY_OVERSIZED', `v2 length ${payload} over ${PROXY_V2_MAX_PAYLOAD}`);
  }
  const length = 16 + payload;
  if (buf.length < length) return more;
  // LOCAL: the balancer's own health check; the connection's addresses apply, the payload is skipped.
  if (command === 0) return { state: 'done', version: 2, length };
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  if (family === 0 || family === 3) return { state: 'done', version: 2, length }; // UNSPEC, UNIX
  if (transport !== 1) return fail('PROXY_UNSUPPORTED', `v2 transport ${transport} (only TCP)`);
  const body = buf.subarray(16, length);
  if (family === 1) {
    if (payload < 12) return fail('PROXY_MALFORMED', 'v2 TCP4 address block too short');
    const ip = (o: number) => `${body[o]}.${body[o + 1]}.${body[o + 2]}.${body[o + 3]}`;
    return {
      state: 'done',
      version: 2,
      length,
      source: { address: ip(0), port: body.readUInt16BE(8) },
      destination: { address: ip(4), port: body.readUInt16BE(10) },
    };
  }
  if (family === 2) {
    if (payload < 36) return fail('PROXY_MALFORMED', 'v2 TCP6 address block too short');
    return {
      state: 'done',
      version: 2,
      length,
      source: { address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32) },
      destination: { address: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34) },
    };
  }
  return fail('PROXY_UNSUPPORTED', `v2 address family ${family}`);
}
