// A DNS server that answers what the test scripts, for the broken answers a real server will not
// give: SERVFAIL, silence (timeouts), CNAME loops, truncated UDP answers (the client must retry over
// TCP), garbage bytes, answers to another question. UDP and TCP on one free loopback port.
import { createSocket } from 'node:dgram';
import net from 'node:net';
import { type Answer, decode, encode, type Packet } from 'dns-packet';
import { freePort } from './free-port.js';

export interface DnsQuestion {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

/**
 * What to answer: records (and an rcode, default 0), `'drop'` for silence, or raw bytes sent as they
 * are. `truncate` sets TC over UDP and sends no records there (the full answer over TCP).
 */
export type ScriptedAnswer = { rcode?: number; answers?: Answer[]; truncate?: boolean } | 'drop' | Buffer;

export interface HostileDns {
  readonly host: string;
  readonly port: number;
  readonly address: string;
  /** Every question received, in order. */
  readonly questions: DnsQuestion[];
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

export async function startHostileDns(script: (q: DnsQuestion) => ScriptedAnswer): Promise<HostileDns> {
  const port = await freePort(HOST);
  const questions: DnsQuestion[] = [];
  const respond = (data: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined => {
    let query: Packet;
    try {
      query = decode(data);
    } catch {
      return undefined;
    }
    const q = query.questions?.[0];
    if (!q) return undefined;
    const question = { name: q.name, type: q.type, transport };
    questions.push(question);
    const a = script(question);
    if (a === 'drop') return undefined;
    if (Buffer.isBuffer(a)) return a;
    const truncated = a.truncate === true && transport === 'udp';
    return encode({
      type: 'response',
      id: query.id ?? 0,
      flags: (1 << 7) | (1 << 8) | (truncated ? 1 << 9 : 0) | (a.rcode ?? 0),
      questions: [q],
      answers: truncated ? [] : (a.answers ?? []),
    });
  };

  const udp = createSocket('udp4');
  udp.on('message', (data, from) => {
    const out = respond(data, 'udp');
    if (out) udp.send(out, from.port, from.address);
  });
  await new Promise<void>((resolve) => udp.bind(port, HOST, resolve));

  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < buf.readUInt16BE(0) + 2) return;
      const out = respond(buf.subarray(2, 2 + buf.readUInt16BE(0)), 'tcp');
      buf = Buffer.alloc(0);
      if (!out) return;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(out.length);
      socket.write(Buffer.concat([len, out]));
    });
  });
  await new Promise<void>((resolve) => tcp.listen(port, HOST, resolve));

  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    questions,
    async stop() {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}
