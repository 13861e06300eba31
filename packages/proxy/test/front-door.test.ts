// The front door on real sockets (a server on port 0, clients from several 127.0.0.x addresses):
// a trusted balancer's PROXY v2 header gives the client and the original destination and what
// follows it is left for the SMTP front; a header from anyone else, or none from a trusted peer,
// closes the socket; an early talker gets 554 5.5.1; a client over its connection rate gets
// 421 4.7.0 unless it is allow-listed.
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { Metrics } from '../src/metrics.js';
import { replies, wireReply } from '../src/replies.js';
import { type Admission, FrontDoor } from '../src/shaping/front-door.js';
import { ShapingRuntime } from '../src/shaping/shaping-runtime.js';
import { shapingConfig, silent } from './wiring.js';

const servers: Server[] = [];
const runtimes: ShapingRuntime[] = [];
after(async () => {
  for (const s of servers) s.close();
  for (const r of runtimes) await r.close();
});

/** A listener whose sockets go through a FrontDoor; each admit() result in order. */
async function door(listenerExtra: string, shaping: string) {
  const config = shapingConfig(shaping, listenerExtra);
  const metrics = new Metrics();
  const shapingRuntime = await ShapingRuntime.create(config, silent, metrics);
  runtimes.push(shapingRuntime);
  const d = new FrontDoor({
    listener: () => config.listeners[0]!,
    shaping: shapingRuntime,
    log: silent,
    metrics,
    secureContext: () => undefined,
    draining: () => false,
  });
  const results: Array<Promise<Admission | undefined>> = [];
  const server = createServer({ pauseOnConnect: true }, (socket) => results.push(d.admit(socket)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  const port = (server.address() as { port: number }).port;
  return { port, results, metrics };
}

function client(
  port: number,
  from: string,
): Promise<{ s: Socket; text: () => string; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => {
      let text = '';
      s.on('data', (b) => {
        text += b.toString('latin1');
      });
      const closed = new Promise<void>((r) => s.on('close', () => r()));
      resolve({ s, text: () => text, closed });
    });
    s.on('error', () => {});
  });
}

/** PROXY v2, PROXY command, TCP over IPv4. */
function proxyV2(src: string, sport: number, dst: string, dport: number): Buffer {
  const ip = (a: string) => Buffer.from(a.split('.').map(Number));
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  const body = Buffer.concat([ip(src), ip(dst), ports]);
  const head = Buffer.from([
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
  ]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([head, len, body]);
}

function readSome(socket: Admission['socket']): Promise<string> {
  return new Promise((resolve) => {
    socket.once('data', (b: Buffer) => resolve(b.toString('latin1')));
    socket.resume();
  });
}

test('a trusted balancer: the header gives client and original destination; the bytes after it stay for the front', async () => {
  const { port, results } = await door('    proxyProtocol: { trusted: [127.0.0.2/32], timeout: 2s }', '  {}');
  const c = await client(port, '127.0.0.2');
  c.s.write(
    Buffer.concat([proxyV2('203.0.113.7', 41000, '198.51.100.25', 25), Buffer.from('EHLO x.test\r\n')]),
  );
  const admitted = await results[0]!;
  assert.ok(admitted);
  assert.equal(admitted.remoteAddress, '203.0.113.7');
  assert.equal(admitted.remotePort, 41000);
  assert.deepEqual(admitted.destination, { address: '198.51.100.25', port: 25 });
  assert.equal(await readSome(admitted.socket), 'EHLO x.test\r\n');
  c.s.destroy();
});

test('a PROXY header from a peer that is not trusted, and none from a trusted one, close the socket', async () => {
  const { port, results, metrics } = await door(
    '    proxyProtocol: { trusted: [127.0.0.2/32], timeout: 300ms }',
    '  greeting: { delay: 300ms }',
  );
  const stranger = await client(port, '127.0.0.3');
  stranger.s.write(proxyV2('203.0.113.7', 41000, '198.51.100.25', 25));
  assert.equal(await results[0], undefined);
  await stranger.closed;
  assert.equal(stranger.text(), '', 'closed without a word');
  const silent = await client(port, '127.0.0.2');
  assert.equal(await results[1], undefined);
  await silent.closed;
  const text = await metrics.registry.metrics();
  assert.match(text, /smtp_lb_sessions_total\{listener="in",outcome="refused-proxy"\} 2/);
});

test('an early talker gets 554 5.5.1 and is closed; a patient client is let in after the delay', async () => {
  const { port, results } = await door('', '  greeting: { delay: 300ms, earlyTalker: reject }');
  const eager = await client(port, '127.0.0.4');
  eager.s.write('EHLO x.test\r\n');
  assert.equal(await results[0], undefined);
  await eager.closed;
  assert.equal(eager.text(), wireReply(replies.earlyTalker()));
  const patient = await client(port, '127.0.0.4');
  const t0 = Date.now();
  const admitted = await results[1]!;
  assert.ok(admitted);
  assert.ok(Date.now() - t0 >= 250, 'after the greeting delay');
  patient.s.destroy();
});

test('over the connection rate: 421 4.7.0; an allow-listed client skips it', async () => {
  const { port, results } = await door(
    '',
    '  allow: [127.0.0.6/32]\n  limits: { connectionRate: { limit: 1, window: 1m }, action: reject }',
  );
  const first = await client(port, '127.0.0.5');
  assert.ok(await results[0]);
  const second = await client(port, '127.0.0.5');
  assert.equal(await results[1], undefined);
  await second.closed;
  assert.equal(second.text(), wireReply(replies.connectionRate()));
  for (let i = 0; i < 3; i++) {
    const allowed = await client(port, '127.0.0.6');
    const a = await results[2 + i]!;
    assert.ok(a, 'allow-listed clients are not counted');
    assert.equal(a.client.allowed, true);
    allowed.s.destroy();
  }
  first.s.destroy();
});
