// Parsers for the value syntaxes of the config file: durations, sizes, host:port, CIDRs, domains and
// URLs. Each returns the value or a short message for the operator; none throws. The string patterns
// are exported so the schema (and so the JSON Schema) checks the same syntax as the parsers.
import { isIP, isIPv4, isIPv6 } from 'node:net';

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(message: string): Parsed<T> => ({ ok: false, message });

/** `500ms`, `30s`, `5m`, `1h`, `1m30s`, or digits (milliseconds). */
export const DURATION_PATTERN = '^(?:[0-9]+|(?:[0-9]+(?:\\.[0-9]+)?(?:ms|s|m|h))+)$';
export const DURATION_HINT = 'expected a duration like 500ms, 30s, 5m or 1h';
/** setTimeout() silently turns longer delays into 1 ms, so nothing longer is accepted. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(value: unknown): Parsed<number> {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) return fail(DURATION_HINT);
    ms = value;
  } else if (typeof value === 'string' && new RegExp(DURATION_PATTERN).test(value)) {
    ms = 0;
    if (/^[0-9]+$/.test(value)) ms = Number(value);
    for (const [, num, unit] of value.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)) {
      ms += Number(num) * DURATION_UNIT_MS[unit as string]!;
    }
    ms = Math.round(ms);
  } else {
    return fail(`${DURATION_HINT}, got ${show(value)}`);
  }
  if (ms > MAX_DURATION_MS) return fail('too long: at most 596h (2^31-1 ms)');
  return ok(ms);
}

/** Decimal (KB, MB, GB = powers of 1000) and binary (KiB, MiB, GiB = powers of 1024) units. */
export const SIZE_PATTERN = '^[0-9]+(?:\\.[0-9]+)? ?(?:B|KB|MB|GB|KiB|MiB|GiB)?$';
export const SIZE_HINT = 'expected a size like 50MB, 512KB or 10MiB';

const SIZE_UNIT_BYTES: Record<string, number> = {
  B: 1,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

export function parseSize(value: unknown): Parsed<number> {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= 0 ? ok(value) : fail(SIZE_HINT);
  }
  const m = typeof value === 'string' ? /^([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)$/.exec(value) : null;
  const unit = m?.[2] || 'B';
  const factor = SIZE_UNIT_BYTES[unit];
  if (!m || factor === undefined) return fail(`${SIZE_HINT}, got ${show(value)}`);
  return ok(Math.round(Number(m[1]) * factor));
}

/** Host name, IPv4 address or bracketed IPv6 address, then a port. */
export const HOST_PORT_PATTERN = '^(?:\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$';
export const HOST_PORT_HINT = 'expected host:port (IPv6 as [::1]:25)';

export interface HostPortValue {
  host: string;
  port: number;
}

/** `allowPortZero` for addresses we listen on: port 0 takes a free port (tests do). */
export function parseHostPort(value: unknown, allowPortZero = false): Parsed<HostPortValue> {
  if (typeof value !== 'string') return fail(HOST_PORT_HINT);
  let host: string;
  let portText: string;
  if (value.startsWith('[')) {
    const m = /^\[([^\]]*)\]:(.*)$/.exec(value);
    if (!m) return fail(HOST_PORT_HINT);
    host = m[1]!;
    portText = m[2]!;
    if (!isIPv6(host)) return fail(`invalid IPv6 address "${host}"`);
  } else {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return fail(`${HOST_PORT_HINT}, got ${show(value)}`);
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.includes(':')) return fail('write IPv6 addresses in brackets, as [::1]:25');
    if (!isIPv4(host) && !isDomainName(host)) return fail(`invalid host "${host}"`);
  }
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  const min = allowPortZero ? 0 : 1;
  if (!(port >= min && port <= 65535)) return fail(`port must be ${min}-65535, got ${show(portText)}`);
  return ok({ host, port });
}

export const CIDR_HINT = 'expected an address or CIDR like 10.0.0.0/8 or fd00::/8';

/** A bare address counts as a single host and comes back as `/32` or `/128`. */
export function parseCidr(value: unknown): Parsed<string> {
  if (typeof value !== 'string') return fail(CIDR_HINT);
  const [address = '', prefix, extra] = value.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return fail(`${CIDR_HINT}, got ${show(value)}`);
  const max = family === 4 ? 32 : 128;
  if (prefix === undefined) return ok(`${address}/${max}`);
  const bits = /^[0-9]{1,3}$/.test(prefix) ? Number(prefix) : Number.NaN;
  if (!(bits >= 0 && bits <= max)) return fail(`prefix length must be 0-${max}, got ${show(prefix)}`);
  return ok(`${address}/${bits}`);
}

export const DNSBL_CODE_HINT = 'expected an address pattern like 127.0.0.2 or 127.0.0.[2..11]';

/**
 * postscreen's DNSBL reply filter (postscreen_dnsbl_sites): four octets, each a number or a bracketed
 * list of numbers and ranges, `127.0.0.[2..11]` or `127.0.[1;3;5..7].2`. Checked here, matched by
 * the proxy; the text comes back unchanged.
 */
export function parseDnsblCode(value: unknown): Parsed<string> {
  if (typeof value !== 'string') return fail(DNSBL_CODE_HINT);
  const octets = value.split('.');
  // A range's ".." splits into empty parts: rejoin bracketed octets first.
  const parts: string[] = [];
  for (const raw of value.match(/\[[^\]]*\]|[^.]+/g) ?? []) parts.push(raw);
  if (octets.length < 4 || parts.length !== 4) return fail(`${DNSBL_CODE_HINT}, got ${show(value)}`);
  for (const p of parts) {
    const items = p.startsWith('[') ? p.slice(1, -1).split(';') : [p];
    for (const item of items) {
      const m = /^([0-9]{1,3})(?:\.\.([0-9]{1,3}))?$/.exec(item);
      if (
        !m ||
        Number(m[1]) > 255 ||
        Number(m[2] ?? 0) > 255 ||
        (m[2] !== undefined && Number(m[2]) < Number(m[1]))
      )
        return fail(`${DNSBL_CODE_HINT}, got ${show(value)}`);
    }
  }
  return ok(value);
}

const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
/** RFC 1123 host name; `_` is let through because container platforms produce such names. */
export const DOMAIN_PATTERN = `^${LABEL}(?:\\.${LABEL})*\\.?$`;
/** An exact domain, or `*.` and a domain for any subdomain of it. */
export const ROUTE_DOMAIN_PATTERN = `^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`;
export const DOMAIN_MAX_LENGTH = 253;

export function isDomainName(value: string): boolean {
  return value.length <= DOMAIN_MAX_LENGTH && new RegExp(DOMAIN_PATTERN).test(value);
}

/** `http(s)://…` for Consul, `redis(s)://…` for Redis. */
export function parseUrl(value: unknown, protocols: readonly string[]): Parsed<string> {
  const hint = `expected a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`;
  if (typeof value !== 'string') return fail(hint);
  // The value is never echoed back: Redis and Consul URLs may carry a password.
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(hint);
  }
  if (!protocols.includes(url.protocol) || url.hostname === '') return fail(hint);
  return ok(value);
}

/** A value quoted for a message, cut short so one error stays one line. */
export function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}
