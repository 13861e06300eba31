// A deliberately broken SMTP backend, the adversary of the smuggling tests: like several real MTAs it
// drops NUL bytes before it looks for the end of data, and it ends DATA on any of the `\n.\n` family
// (CR, LF or CRLF, a dot, CR, LF or CRLF). Whatever follows is read as commands, so a message the node
// let through with such a sequence inside shows up here as a second transaction. It records every
// MAIL command and every message it took; it is not an oracle of what a message should contain.
// With `recordBytes` it models another flaw instead: DATA is read in records like fgets() into a
// fixed buffer (a line ends at LF or after that many bytes), and a record `.` CRLF ends the message,
// so the tail of a long line that starts with `.` CRLF ends DATA early.
import net from 'node:net';
import { startCaptureBackend } from '@smtp-lb/testkit';
import type { Cleanup } from './cleanup.js';

export interface LaxMessage {
  mailFrom: string;
  rcptTo: string[];
  /** Content as this backend saw it: NUL dropped, a leading `..` read as `.`. */
  data: Buffer;
}

export interface LaxBackend {
  address: string;
  /** Every MAIL command line received, in order, over all sessions. */
  mails: string[];
  messages: LaxMessage[];
  close(): Promise<void>;
}

const END = /(?:\r\n|\r|\n)\.(?:\r\n|\r|\n)/;
const START = /^\.(?:\r\n|\r|\n)/;

export interface LaxOptions {
  /** DATA read in records of at most this many bytes (fgets-style), ended by a `.` CRLF record. */
  recordBytes?: number;
}

export async function startLaxBackend(opts: LaxOptions = {}): Promise<LaxBackend> {
  const mails: string[] = [];
  const messages: LaxMessage[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let inData = false;
    let buf = '';
    let from = '';
    let rcpts: string[] = [];
    let records: string[] = [];
    const say = (s: string) => {
      if (!socket.destroyed) socket.write(`${s}\r\n`);
    };
    const command = (line: string) => {
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') return say('250-lax.test\r\n250-PIPELINING\r\n250 8BITMIME');
      if (verb === 'HELO') return say('250 lax.test');
      if (verb === 'MAIL') {
        mails.push(line);
        from = line;
        rcpts = [];
        return say('250 2.1.0 Ok');
      }
      if (verb === 'RCPT') {
        rcpts.push(line);
        return say('250 2.1.5 Ok');
      }
      if (verb === 'DATA') {
        inData = true;
        return say('354 go ahead');
      }
      if (verb === 'QUIT') {
        say('221 2.0.0 Bye');
        socket.end();
        return;
      }
      if (verb === 'RSET' || verb === 'NOOP') return say('250 2.0.0 Ok');
      say('502 5.5.2 Error: command not recognized');
    };
    const record = (size: number): boolean => {
      const lf = buf.indexOf('\n');
      const len = lf >= 0 && lf < size ? lf + 1 : buf.length >= size ? size : 0;
      if (len === 0) return false;
      const r = buf.slice(0, len);
      buf = buf.slice(len);
      if (/^\.\r?\n$/.test(r)) {
        messages.push({ mailFrom: from, rcptTo: rcpts, data: Buffer.from(records.join(''), 'latin1') });
        records = [];
        inData = false;
        say('250 2.0.0 Ok: queued');
      } else records.push(r.startsWith('..') ? r.slice(1) : r);
      return true;
    };
    const pump = () => {
      for (;;) {
        if (inData && opts.recordBytes !== undefined) {
          if (!record(opts.recordBytes)) return;
          continue;
        }
        if (inData) {
          const m = START.exec(buf) ?? END.exec(buf);
          if (!m) return;
          const content = buf.slice(0, m.index + m[0].indexOf('.'));
          const data = Buffer.from(content.replace(/(^|\r\n|\r|\n)\.\./g, '$1.'), 'latin1');
          messages.push({ mailFrom: from, rcptTo: rcpts, data });
          buf = buf.slice(m.index + m[0].length);
          inData = false;
          say('250 2.0.0 Ok: queued');
          continue;
        }
        const lf = buf.indexOf('\n');
        if (lf < 0) return;
        const line = buf.slice(0, lf).replace(/\r$/, '');
        buf = buf.slice(lf + 1);
        command(line);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      // The flaw this backend models: NUL is gone before the end of data is looked for.
      buf += chunk.toString('latin1').replaceAll('\x00', '');
      pump();
    });
    say('220 lax.test ESMTP');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    mails,
    messages,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A lax backend or a strict one (smtp-server, the testkit's capture backend), seen the same way: MAIL lines, message contents. */
export interface ObservedBackend {
  address: string;
  mails(): string[];
  /** Each message's content (dot-stuffing removed), latin1. */
  messages(): string[];
}

export async function observedBackend(kind: 'lax' | 'strict', cleanup: Cleanup): Promise<ObservedBackend> {
  if (kind === 'lax') {
    const lax = await startLaxBackend();
    cleanup.push(() => lax.close());
    return {
      address: lax.address,
      mails: () => lax.mails,
      messages: () => lax.messages.map((m) => m.data.toString('latin1')),
    };
  }
  const strict = await startCaptureBackend();
  cleanup.push(() => strict.close());
  return {
    address: strict.address,
    mails: () => strict.sessions.flatMap((s) => s.lines.filter((l) => /^MAIL FROM/i.test(l))),
    messages: () => strict.messages.map((m) => m.data.toString('latin1')),
  };
}
