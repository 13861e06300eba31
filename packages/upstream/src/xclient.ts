// Builds the XCLIENT commands (Postfix XCLIENT_README) that hand the real client's identity to a
// backend: only attributes the backend listed in its EHLO, values xtext-encoded, `[UNAVAILABLE]` when
// unknown, values of at most 255 characters, and each command line within 512 octets (RFC 5321
// 4.5.3.1.4), split over several commands.
import { parseIp } from './ip-address.js';
import type { ClientIdentity } from './types.js';
import { xtextEncode } from './xtext.js';

const UNAVAILABLE = '[UNAVAILABLE]';
/** 512 octets including CRLF. */
const MAX_LINE = 510;
/** Postfix answers `501 attribute value too long` past 255 characters of (encoded) value. */
const MAX_VALUE = 255;
const ORDER = ['ADDR', 'PORT', 'PROTO', 'HELO', 'NAME', 'LOGIN', 'DESTADDR', 'DESTPORT'] as const;
/**
 * Postfix checks XCLIENT authorisation against the client name and address as they stand: once an
 * XCLIENT has overridden them, the next XCLIENT gets 550. So these two go in the last command.
 */
const LAST = new Set<string>(['ADDR', 'NAME']);

/** `offered` is the XCLIENT keyword's parameter list from EHLO, e.g. `ADDR PORT NAME`. */
export function xclientCommands(offered: string, id: ClientIdentity): string[] {
  const names = new Set(offered.toUpperCase().split(/\s+/));
  const early: string[] = [];
  const late: string[] = [];
  for (const name of ORDER) {
    if (!names.has(name)) continue;
    const raw = attributeValue(name, id);
    const value = raw === undefined ? UNAVAILABLE : xtextEncode(raw);
    // A value too long for the backend (a giant HELO) is better unknown than cut short. So every
    // attribute fits one command line, and so do ADDR and NAME together.
    (LAST.has(name) ? late : early).push(`${name}=${value.length > MAX_VALUE ? UNAVAILABLE : value}`);
  }
  const commands: string[] = [];
  const add = (attrs: string) => {
    const last = commands.length - 1;
    if (last >= 0 && commands[last]!.length + 1 + attrs.length <= MAX_LINE) commands[last] += ` ${attrs}`;
    else commands.push(`XCLIENT ${attrs}`);
  };
  for (const attr of early) add(attr);
  if (late.length > 0) add(late.join(' '));
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
