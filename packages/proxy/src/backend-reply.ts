// What of a backend's reply reaches the client. The text is relayed byte for byte (bytes that are not
// UTF-8 too: never replaced by U+FFFD), with two exceptions a client must be kept from. A control
// byte (NUL, a bare CR, ESC...; RFC 5321 4.2: reply text is TAB and printable characters) becomes
// `?`, as Postfix's printable() does with text from the network. A line longer than 512 octets with
// its code and CRLF (RFC 5321 4.5.3.1.5) is split into more lines of the same reply ("more
// information may be conveyed through multiple-line replies"), each continuing with the enhanced
// code (RFC 2034 4: it prefixes the text of every line): a client with a 512-octet buffer (Exim
// fails the delivery on a reply line over its buffer) gets all the text and nothing it cannot read.
import { decodeWire, encodeWire, hasRawBytes, type Reply } from '@smtp-lb/upstream';

/** RFC 5321 4.5.3.1.5: a reply line is at most 512 octets, the code and the CRLF included. */
export const MAX_REPLY_LINE = 512;
/** The text of one line: the limit less `NNN-` and CRLF. */
const MAX_TEXT = MAX_REPLY_LINE - 6;
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f]/g;
/** One scan for the common case: neither a control byte nor (perhaps) an escaped byte. */
const SUSPECT = /[\x00-\x08\x0a-\x1f\x7f\udc80-\udcff]/;
const SP = 0x20;

/** `control-bytes` and `long-line` were repaired; `not-utf8` text passed as it came. */
export type ReplyDefect = 'control-bytes' | 'long-line' | 'not-utf8';

/** `r` as a client may get it and what was wrong with it; undefined when nothing was (nearly every reply). */
export function forClient(r: Reply): { reply: Reply; defects: ReplyDefect[] } | undefined {
  let defects: ReplyDefect[] | undefined;
  let lines: string[] | undefined;
  for (let i = 0; i < r.lines.length; i++) {
    const line = r.lines[i]!;
    // The common case: short, printable, UTF-8 (a UTF-8 character is at most 3 octets per UTF-16 unit).
    const short = line.length * 3 <= MAX_TEXT;
    if (short && !SUSPECT.test(line)) {
      lines?.push(line);
      continue;
    }
    lines ??= r.lines.slice(0, i);
    defects ??= [];
    let text = line;
    if (CONTROL.test(text)) {
      text = text.replace(CONTROLS, '?');
      add(defects, 'control-bytes');
    }
    if (hasRawBytes(text)) add(defects, 'not-utf8');
    const bytes = short ? undefined : toBytes(encodeWire(text));
    if (bytes && bytes.length > MAX_TEXT) {
      lines.push(...split(bytes, r.enhanced));
      add(defects, 'long-line');
    } else lines.push(text);
  }
  if (!lines || !defects) return undefined;
  return defects.length === 0 ? undefined : { reply: { ...r, lines }, defects };
}

function add(defects: ReplyDefect[], d: ReplyDefect): void {
  if (!defects.includes(d)) defects.push(d);
}

function toBytes(w: string | Buffer): Buffer {
  return typeof w === 'string' ? Buffer.from(w, 'utf8') : w;
}

/** `bytes` as lines of at most MAX_TEXT octets, cut after a space or at a character boundary. */
function split(bytes: Buffer, enhanced: string | undefined): string[] {
  const prefix = enhanced ? `${enhanced} ` : '';
  const out: string[] = [];
  let start = 0;
  while (start < bytes.length) {
    const room = out.length === 0 ? MAX_TEXT : MAX_TEXT - prefix.length;
    let end = start + room;
    if (end >= bytes.length) end = bytes.length;
    else {
      const space = bytes.lastIndexOf(SP, end - 1);
      if (space > start + room / 2) end = space + 1;
      else {
        // Not inside a UTF-8 sequence: back off over continuation bytes (at most three).
        let k = end;
        while (k > end - 3 && (bytes[k]! & 0xc0) === 0x80) k--;
        if (k > start) end = k;
      }
    }
    const piece = decodeWire(bytes, start, end);
    out.push(out.length === 0 ? piece : prefix + piece);
    start = end;
  }
  return out;
}
