// Milter packets (Sendmail's libmilter protocol, version 6, as Postfix speaks it to milters): a 4-byte
// big-endian length that counts the command byte, the command byte, then the data. The decoder takes
// bytes as they arrive and bounds every length by a maximum before it buffers anything.

/** Commands the MTA sends (SMFIC_*). */
export const Cmd = {
  abort: 'A',
  body: 'B',
  connect: 'C',
  macro: 'D',
  bodyEnd: 'E',
  helo: 'H',
  quitNewConnection: 'K',
  header: 'L',
  mail: 'M',
  headersEnd: 'N',
  optneg: 'O',
  quit: 'Q',
  rcpt: 'R',
  data: 'T',
  unknown: 'U',
} as const;

/** Replies and modification requests of the milter (SMFIR_*). */
export const Rep = {
  addRcpt: '+',
  delRcpt: '-',
  addRcptPar: '2',
  shutdown: '4',
  accept: 'a',
  replaceBody: 'b',
  continue: 'c',
  discard: 'd',
  changeFrom: 'e',
  connectionFail: 'f',
  addHeader: 'h',
  insertHeader: 'i',
  setSymlist: 'l',
  changeHeader: 'm',
  progress: 'p',
  quarantine: 'q',
  reject: 'r',
  skip: 's',
  tempfail: 't',
  replyCode: 'y',
} as const;

/** Replies that change the message: only legal after end of body, never applied in streaming mode. */
export const MODIFICATIONS = new Set<string>([
  Rep.addRcpt,
  Rep.delRcpt,
  Rep.addRcptPar,
  Rep.replaceBody,
  Rep.changeFrom,
  Rep.addHeader,
  Rep.insertHeader,
  Rep.changeHeader,
  Rep.quarantine,
]);

/** Protocol flags (SMFIP_*): steps the milter may ask us to skip, or not to answer. */
export const Proto = {
  noConnect: 0x1,
  noHelo: 0x2,
  noMail: 0x4,
  noRcpt: 0x8,
  noBody: 0x10,
  noHeaders: 0x20,
  noEoh: 0x40,
  noReplyHeader: 0x80,
  noUnknown: 0x100,
  noData: 0x200,
  skip: 0x400,
  rcptRejected: 0x800,
  noReplyConnect: 0x1000,
  noReplyHelo: 0x2000,
  noReplyMail: 0x4000,
  noReplyRcpt: 0x8000,
  noReplyData: 0x10000,
  noReplyUnknown: 0x20000,
  noReplyEoh: 0x40000,
  noReplyBody: 0x80000,
  headerLeadingSpace: 0x100000,
} as const;

/** Every protocol flag we can honour (all of version 6). */
export const PROTO_ALL = 0x1fffff;
/** Actions (SMFIF_*) we let the milter request: all of version 6; we count them, we cannot apply them. */
export const ACTIONS_ALL = 0x1ff;
export const MILTER_VERSION = 6;
/** Body chunks are at most this long (libmilter MILTER_CHUNK_SIZE). */
export const MAX_BODY_CHUNK = 65535;

export interface Packet {
  /** The command or reply byte as a one-character string. */
  code: string;
  data: Buffer;
}

export class MilterProtocolError extends Error {
  readonly code = 'EMILTERPROTO';
}

export function encodePacket(code: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + data.length);
  out.writeUInt32BE(data.length + 1, 0);
  out[4] = code.charCodeAt(0);
  data.copy(out, 5);
  return out;
}

/** NUL-terminated strings, one after the other (the form of most milter data). */
export function cstrings(...parts: string[]): Buffer {
  return Buffer.from(parts.map((p) => `${p}\0`).join(''), 'utf8');
}

/** Splits a NUL-separated payload; a trailing NUL ends the last string. */
export function splitCstrings(data: Buffer): string[] {
  const text = data.toString('utf8');
  const parts = text.split('\0');
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/**
 * Streaming decoder: push() the bytes as they come, get every complete packet. A length of zero (no
 * command byte) or above `maxLength` is a protocol error; nothing bigger than `maxLength` is ever
 * buffered.
 */
export class PacketDecoder {
  #buf: Buffer = Buffer.alloc(0);
  readonly #max: number;

  constructor(maxLength = 1024 * 1024) {
    this.#max = maxLength;
  }

  push(chunk: Buffer): Packet[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Packet[] = [];
    let off = 0;
    const buf = this.#buf;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off);
      if (len === 0) throw new MilterProtocolError('milter packet of length 0');
      if (len > this.#max) throw new MilterProtocolError(`milter packet of ${len} bytes (max ${this.#max})`);
      if (buf.length - off < 4 + len) break;
      out.push({
        code: String.fromCharCode(buf[off + 4]!),
        data: Buffer.from(buf.subarray(off + 5, off + 4 + len)),
      });
      off += 4 + len;
    }
    this.#buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
    return out;
  }

  /** Bytes held for an incomplete packet. */
  get pending(): number {
    return this.#buf.length;
  }
}

/** The milter's answer to option negotiation. */
export interface Negotiated {
  version: number;
  actions: number;
  protocol: number;
}

export function parseOptneg(p: Packet): Negotiated {
  if (p.code !== Cmd.optneg || p.data.length < 12)
    throw new MilterProtocolError(`expected option negotiation, got '${p.code}' (${p.data.length} bytes)`);
  return {
    version: p.data.readUInt32BE(0),
    actions: p.data.readUInt32BE(4),
    protocol: p.data.readUInt32BE(8),
  };
}

export function optneg(version: number, actions: number, protocol: number): Buffer {
  const data = Buffer.alloc(12);
  data.writeUInt32BE(version, 0);
  data.writeUInt32BE(actions, 4);
  data.writeUInt32BE(protocol, 8);
  return encodePacket(Cmd.optneg, data);
}

/** SMFIC_CONNECT: hostname, family ('4', '6', 'U' unknown), port (16-bit), address. */
export function connectPacket(hostname: string, address: string, port: number): Buffer {
  const family = address.includes(':') ? '6' : /^\d+\.\d+\.\d+\.\d+$/.test(address) ? '4' : 'U';
  if (family === 'U') return encodePacket(Cmd.connect, Buffer.from(`${hostname}\0U`, 'utf8'));
  const head = Buffer.from(`${hostname}\0${family}`, 'utf8');
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port & 0xffff, 0);
  return encodePacket(Cmd.connect, Buffer.concat([head, p, Buffer.from(`${address}\0`, 'utf8')]));
}

/** SMFIC_MACRO: the command the macros are for, then name/value pairs. */
export function macroPacket(forCmd: string, macros: Record<string, string>): Buffer {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(macros)) parts.push(k, v);
  return encodePacket(Cmd.macro, Buffer.concat([Buffer.from(forCmd, 'latin1'), cstrings(...parts)]));
}

/** SMFIR_REPLYCODE data: `554 5.7.1 text`, possibly multi-line (`554-5.7.1 a\r\n554 5.7.1 b`). */
export function parseReplyCode(
  data: Buffer,
): { code: number; enhanced?: string; lines: string[] } | undefined {
  const text = data.toString('utf8').replace(/\0+$/, '');
  const lines: string[] = [];
  let code = 0;
  for (const raw of text.split(/\r?\n/)) {
    const m = /^([2-5]\d\d)([ -]?)(.*)$/.exec(raw);
    if (!m) return undefined;
    const c = Number(m[1]);
    if (code !== 0 && c !== code) return undefined;
    code = c;
    lines.push(m[3]!);
  }
  if (code < 400 || lines.length === 0) return undefined;
  const enhanced = /^([45]\.\d{1,3}\.\d{1,3})(?:\s|$)/.exec(lines[0]!)?.[1];
  return enhanced ? { code, enhanced, lines } : { code, lines };
}
