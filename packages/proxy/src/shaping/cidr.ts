// Address helpers for shaping: CIDR lists (allow lists, trusted PROXY peers) on node's BlockList,
// the plain form of an IPv4-mapped address, and the prefix a client is counted under (/24, /64).
import { BlockList, isIPv4, isIPv6, SocketAddress } from 'node:net';

/** `::ffff:192.0.2.1` (a dual-stack socket's view of an IPv4 peer) becomes `192.0.2.1`. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

export class CidrList {
  readonly #list = new BlockList();
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const [net = '', bits] = c.split('/');
      const family = isIPv4(net) ? 'ipv4' : 'ipv6';
      this.#list.addSubnet(net, Number(bits ?? (family === 'ipv4' ? 32 : 128)), family);
    }
    this.size = cidrs.length;
  }

  has(address: string): boolean {
    if (this.size === 0) return false;
    const a = plainAddress(address);
    if (isIPv4(a)) return this.#list.check(a, 'ipv4');
    return isIPv6(a) && this.#list.check(a, 'ipv6');
  }
}

/** The network a client is counted under for per-prefix limits: /24 for IPv4, /64 for IPv6. */
export function clientPrefix(address: string): string {
  const a = plainAddress(address);
  if (isIPv4(a)) return `${a.split('.').slice(0, 3).join('.')}.0/24`;
  const full = expandIPv6(a);
  const net = new SocketAddress({ address: `${full.slice(0, 4).join(':')}:0:0:0:0`, family: 'ipv6' });
  return `${net.address}/64`;
}

/** The eight 16-bit groups of an IPv6 address, as hex strings without leading zeros. */
export function expandIPv6(address: string): string[] {
  let text = address;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...zeros, ...t].map((g) => Number.parseInt(g, 16).toString(16));
}
