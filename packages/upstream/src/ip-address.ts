// Parses the textual client/listener addresses we are given into bytes and a family, folding
// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack listener reports) back to IPv4.
import net from 'node:net';

export interface IpAddress {
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  bytes: Buffer;
  /** Dotted quad, or the IPv6 text as given (lower case, no zone, no brackets). */
  text: string;
}

export function parseIp(input: string): IpAddress | undefined {
  let s = input.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (net.isIPv4(s)) return { family: 4, bytes: Buffer.from(s.split('.').map(Number)), text: s };
  if (!net.isIPv6(s)) return undefined;
  const bytes = ipv6Bytes(s.toLowerCase());
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    const v4 = bytes.subarray(12);
    return { family: 4, bytes: Buffer.from(v4), text: [...v4].join('.') };
  }
  return { family: 6, bytes, text: s.toLowerCase() };
}

/** `s` is valid IPv6 text (checked by net.isIPv6). */
function ipv6Bytes(s: string): Buffer {
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(Number.parseInt(g, 16));
    }
    return out;
  };
  const gap = s.indexOf('::');
  const head = groups(gap < 0 ? s : s.slice(0, gap));
  const tail = gap < 0 ? [] : groups(s.slice(gap + 2));
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  const bytes = Buffer.alloc(16);
  for (const [i, g] of all.entries()) bytes.writeUInt16BE(g, i * 2);
  return bytes;
}
