// Builds the XCLIENT commands (Postfix XCLIENT_README) that hand the real client's identity to a
// backend: only attributes the backend listed in its EHLO, values xtext-encoded, `[UNAVAILABLE]` when
// unknown, and each command line within 512 octets (RFC 5321 4.5.3.1.4), split over several commands.
import { parseIp } from './ip-address.js';
import type { ClientIdentity } from './types.js';
import { xtextEncode } from './xtext.js';

const UNAVAILABLE = '[UNAVAILABLE]';
/** 512 octets including CRLF. */
const MAX_LINE = 510;
const ORDER = ['ADDR', 'PORT', 'PROTO', 'HELO', 'NAME', 'LOGIN', 'DESTADDR', 'DESTPORT'] as const;

/** `offered` is the XCLIENT keyword's parameter list from EHLO, e.g. `ADDR PORT NAME`. */
export function xclientCommands(offered: string, id: ClientIdentity): string[] {
  const names = new Set(offered.toUpperCase().split(/\s+/));
  const attrs: string[] = [];
  for (const name of ORDER) {
    if (!names.has(name)) continue;
    const value = attributeValue(name, id);
    let attr = `${name}=${value === undefined ? UNAVAILABLE : xtextEncode(value)}`;
    // A value that cannot fit one command line (a giant HELO) is better unknown than cut short.
    if (`XCLIENT ${attr}`.length > MAX_LINE) attr = `${name}=${UNAVAILABLE}`;
    attrs.push(attr);
  }
  const commands: string[] = [];
  let line = '';
  for (const attr of attrs) {
    if (line !== '' && line.length + 1 + attr.length > MAX_LINE) {
      commands.push(line);
      line = '';
    }
    line = line === '' ? `XCLIENT ${attr}` : `${line} ${attr}`;
  }
  if (line !== '') commands.push(line);
  return commands;
}

function attributeValue(name: (typeof ORDER)[number], id: ClientIdentity): string | undefined {
  switch (name) {
    case 'ADDR':
      return xclientAddr(id.address);
    case 'PORT':
      return port(id.port);
    case 'PROTO':
      return id.proto;
    case 'HELO':
      return id.helo;
    case 'NAME':
      return id.name;
    case 'LOGIN':
      return id.login;
    case 'DESTADDR':
      return xclientAddr(id.localAddress);
    case 'DESTPORT':
      return port(id.localPort);
  }
}

/** IPv6 goes as `IPV6:2001:db8::1`; IPv4-mapped IPv6 as plain IPv4. */
function xclientAddr(address: string): string | undefined {
  const ip = parseIp(address);
  if (!ip) return undefined;
  return ip.family === 4 ? ip.text : `IPV6:${ip.text}`;
}

function port(p: number): string | undefined {
  return Number.isInteger(p) && p >= 0 && p <= 65535 ? String(p) : undefined;
}
