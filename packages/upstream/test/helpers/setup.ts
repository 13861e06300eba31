// Shared pieces of the connection tests: options against a backend, a client identity, bodies,
// a scripted misbehaving backend, and a guard that fails the run on any unhandled rejection.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after } from 'node:test';
import {
  type CaptureBackend,
  type CaptureBackendOptions,
  startCaptureBackend,
  startWireBackend,
  type WireBackend,
  type WireBackendOptions,
} from '@smtp-lb/testkit';
import type { ClientIdentity, UpstreamOptions } from '../../src/index.js';

export const identity: ClientIdentity = {
  address: '192.0.2.7',
  port: 41000,
  localAddress: '198.51.100.1',
  localPort: 25,
  helo: 'client.example',
  name: '[UNAVAILABLE]',
  proto: 'ESMTP',
};

export function options(
  target: { host?: string; port: number },
  over: Partial<UpstreamOptions> = {},
): UpstreamOptions {
  return {
    host: target.host ?? '127.0.0.1',
    port: target.port,
    heloName: 'proxy.test',
    tls: { mode: 'none', verify: false },
    xclient: 'off',
    proxyProtocol: 'off',
    timeouts: { connect: 3000, greeting: 3000, command: 3000, dataStart: 3000, dataDone: 3000 },
    ...over,
  };
}

export function body(...chunks: Array<string | Buffer>): Readable {
  return Readable.from(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c)));
}

const backends: Array<CaptureBackend | WireBackend> = [];
/** smtp-server, the backend the client has to get along with. */
export async function backend(opts?: CaptureBackendOptions): Promise<CaptureBackend> {
  const b = await startCaptureBackend(opts);
  backends.push(b);
  return b;
}

/** The wire recorder, for the client's byte-level behaviour and replies no real server gives. */
export async function wireBackend(opts?: WireBackendOptions): Promise<WireBackend> {
  const b = await startWireBackend(opts);
  backends.push(b);
  return b;
}

export interface Stub {
  port: number;
  close(): Promise<void>;
}

/**
 * A backend that misbehaves on purpose: greets, answers each command line with `script(line)` (no
 * reply when undefined), and after a 354 hands raw content to `onContent`, or stops reading when
 * there is none (a backend that takes no more content).
 */
export async function stub(
  script: (line: string) => string | undefined,
  onContent?: (chunk: Buffer, socket: net.Socket) => void,
): Promise<Stub> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write('220 stub ESMTP\r\n');
    let buf = '';
    let content = false;
    socket.on('data', (chunk: Buffer) => {
      if (content) {
        onContent?.(chunk, socket);
        return;
      }
      buf += chunk.toString('latin1');
      for (let lf = buf.indexOf('\n'); lf >= 0 && !content; lf = buf.indexOf('\n')) {
        const line = buf.slice(0, lf).replace(/\r$/, '');
        buf = buf.slice(lf + 1);
        const reply = script(line);
        if (reply !== undefined) socket.write(`${reply}\r\n`);
        if (reply?.startsWith('354')) {
          content = true;
          if (!onContent) socket.pause();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const s: Stub = {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const sock of sockets) sock.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  stubs.push(s);
  return s;
}
const stubs: Stub[] = [];

/** A plain ESMTP script for stubs: EHLO with `caps`, 250 to MAIL/RCPT/RSET, 354 to DATA. */
export function esmtp(caps: string[] = ['PIPELINING']): (line: string) => string | undefined {
  return (line) => {
    const verb = line.split(' ')[0]!.toUpperCase();
    if (verb === 'EHLO')
      return ['stub', ...caps].map((c, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${c}`).join('\r\n');
    if (verb === 'DATA') return '354 go ahead';
    return '250 2.0.0 Ok';
  };
}

const unhandled: unknown[] = [];
process.on('unhandledRejection', (err) => unhandled.push(err));

after(async () => {
  await Promise.all([...backends.map((b) => b.close()), ...stubs.map((s) => s.close())]);
  assert.deepEqual(unhandled, [], 'no promise rejection went unhandled');
});

export function once(emitter: { once(ev: string, fn: () => void): unknown }, event: string): Promise<void> {
  return new Promise((resolve) => emitter.once(event, () => resolve()));
}
