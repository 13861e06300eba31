// A small stub resolver for MX resolution: one question to the configured DNS servers in order, over
// UDP with EDNS0 (4096 bytes), again over TCP when the answer is truncated. It exists because the
// resolver in node:dns gives no TTL for MX answers, and MX answers must be cached for their TTL.
// Every answer is checked against the question it was sent for; anything malformed is an error
// result, never a throw past `query`.
import { createSocket } from 'node:dgram';
import { getServers } from 'node:dns';
import { isIPv6, connect as tcpConnect } from 'node:net';
import type { HostPort } from '@smtp-lb/config';
import { type Answer, decode, encode, type Packet, streamEncode } from 'dns-packet';

export type RecordType = 'MX' | 'A' | 'AAAA';

/** RFC 1035 4.1.1 RCODE values we tell apart. */
export const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** A resource record as we read it: anything in `data` is checked before use. */
export interface DnsRecord {
  type: string;
  name: string;
  ttl?: number;
  data?: unknown;
}

export type DnsResult =
  | { ok: true; rcode: number; answers: DnsRecord[]; authorities: DnsRecord[] }
  | { ok: false; error: 'timeout' | 'servfail' | 'refused' | 'malformed' | 'network'; detail: string };

export interface DnsClientOptions {
  /** Asked in order; empty: the system's. */
  servers: readonly HostPort[];
  /** One server's answer, per transport (ms). */
  timeout: number;
}

const MAX_TCP_ANSWER = 65_535 + 2;

export class DnsClient {
  readonly #servers: HostPort[];
  readonly #timeout: number;

  constructor(options: DnsClientOptions) {
    this.#servers = options.servers.length > 0 ? [...options.servers] : systemServers();
    this.#timeout = options.timeout;
  }

  /** Asks each server in turn until one gives an answer that is not a failure (SERVFAIL, REFUSED). */
  async query(name: string, type: RecordType): Promise<DnsResult> {
    let last: DnsResult = { ok: false, error: 'network', detail: 'no DNS server configured' };
    for (const server of this.#servers) {
      last = await this.#ask(server, name, type);
      if (last.ok) return last;
    }
    return last;
  }

  async #ask(server: HostPort, name: string, type: RecordType): Promise<DnsResult> {
    const id = (Math.random() * 0x10000) >>> 0;
    const question: Packet = {
      type: 'query',
      id,
      flags: 1 << 8, // RD: recursion desired
      questions: [{ type, name, class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as unknown as Answer],
    };
    const accept = (data: Buffer) => check(data, id, name, type);
    let answer = await udpExchange(server, encode(question), this.#timeout, accept);
    if (answer.ok && answer.truncated) {
      answer = await tcpExchange(server, streamEncode(question), this.#timeout, accept);
    }
    if (!answer.ok) return answer;
    const { packet } = answer;
    const rcode = (packet.flags ?? 0) & 0xf;
    if (rcode === RCODE.SERVFAIL)
      return { ok: false, error: 'servfail', detail: `SERVFAIL from ${hp(server)}` };
    if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) {
      return { ok: false, error: 'refused', detail: `rcode ${rcode} from ${hp(server)}` };
    }
    return {
      ok: true,
      rcode,
      answers: (packet.answers ?? []) as DnsRecord[],
      authorities: (packet.authorities ?? []) as DnsRecord[],
    };
  }
}

type Checked =
  | { ok: true; packet: Packet; truncated: boolean }
  | { ok: false; error: 'malformed'; detail: string };

/** The answer must be a response to our id and question (RFC 5452: an answer to anything else is dropped). */
function check(data: Buffer, id: number, name: string, type: RecordType): Checked {
  let packet: ReturnType<typeof decode>;
  try {
    packet = decode(data);
  } catch (err) {
    return { ok: false, error: 'malformed', detail: `undecodable answer: ${(err as Error).message}` };
  }
  const q = packet.questions?.[0];
  if (
    packet.type !== 'response' ||
    packet.id !== id ||
    !q ||
    q.type !== type ||
    q.name.toLowerCase() !== name.toLowerCase()
  ) {
    return { ok: false, error: 'malformed', detail: 'answer does not match the question' };
  }
  return { ok: true, packet, truncated: packet.flag_tc };
}

type Exchange = Checked | { ok: false; error: 'timeout' | 'network'; detail: string };

/**
 * A datagram that is not the answer to our question (another id or question, or no DNS message at
 * all: a spoofing attempt, a late answer) is dropped and we go on waiting (RFC 5452 9.1).
 */
function udpExchange(
  server: HostPort,
  query: Buffer,
  timeout: number,
  accept: (data: Buffer) => Checked,
): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = createSocket(isIPv6(server.host) ? 'udp6' : 'udp4');
    const done = (r: Exchange) => {
      clearTimeout(timer);
      socket.close();
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ ok: false, error: 'timeout', detail: `no answer from ${hp(server)} within ${timeout}ms` }),
      timeout,
    );
    socket.on('error', (err) => done({ ok: false, error: 'network', detail: err.message }));
    socket.on('message', (data, from) => {
      if (from.port !== server.port) return;
      const checked = accept(data);
      if (checked.ok) done(checked);
    });
    socket.send(query, server.port, server.host);
  });
}

/** Over TCP the server is the one we connected to: what it answers is its answer, good or not. */
function tcpExchange(
  server: HostPort,
  query: Buffer,
  timeout: number,
  accept: (data: Buffer) => Checked,
): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const socket = tcpConnect({ host: server.host, port: server.port });
    const done = (r: Exchange) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () =>
        done({ ok: false, error: 'timeout', detail: `no TCP answer from ${hp(server)} within ${timeout}ms` }),
      timeout,
    );
    socket.on('error', (err) => done({ ok: false, error: 'network', detail: err.message }));
    socket.on('connect', () => socket.write(query));
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      const all = Buffer.concat(chunks, size);
      if (size >= 2 && size >= all.readUInt16BE(0) + 2)
        done(accept(all.subarray(2, 2 + all.readUInt16BE(0))));
      else if (size > MAX_TCP_ANSWER) done({ ok: false, error: 'network', detail: 'TCP answer too long' });
    });
    socket.on('end', () => done({ ok: false, error: 'network', detail: 'TCP answer cut short' }));
  });
}

function systemServers(): HostPort[] {
  return getServers().map((s) => {
    const m = /^\[(.+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
    return m ? { host: m[1]!, port: Number(m[2]) } : { host: s, port: 53 };
  });
}

function hp(s: HostPort): string {
  return isIPv6(s.host) ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}
