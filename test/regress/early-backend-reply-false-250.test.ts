// A false 250 (issue 11): a backend that says 250 in the middle of DATA (a lax one does when content
// ended its message early) and then refuses the real dot with 554. The client had sent body and dot
// in one go; the node took the early 250 as the answer to the whole message, because its guard only
// looked at whether the client's dot had come, not whether ours had left. Any reply before our final
// dot reached the backend is now a protocol violation: 451 4.4.2 to the client, the backend connection
// dropped without the dot, a log line and a counter.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { simpleConfig, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

/** A raw backend: with `early`, 250 as soon as content arrives (told to the test), 554 at the dot. */
class EarlyBackend {
  readonly server = net.createServer((s) => this.#session(s));
  early = true;
  /** Content bytes received per DATA, and whether the node closed the connection. */
  readonly transfers: Array<{ bytes: string; closed: boolean }> = [];
  onContent: ((socket: net.Socket) => void) | undefined;

  get address(): string {
    const a = this.server.address() as net.AddressInfo;
    return `127.0.0.1:${a.port}`;
  }

  #session(socket: net.Socket): void {
    socket.on('error', () => {});
    socket.write('220 early.test ESMTP\r\n');
    let buf = '';
    let transfer: { bytes: string; closed: boolean } | undefined;
    socket.on('close', () => {
      if (transfer) transfer.closed = true;
    });
    socket.on('data', (chunk: Buffer) => {
      if (transfer) {
        const first = transfer.bytes === '';
        transfer.bytes += chunk.toString('latin1');
        if (first && this.early) this.onContent?.(socket);
        if (transfer.bytes.endsWith('\r\n.\r\n')) {
          socket.write(this.early ? '554 5.7.1 Refused at the dot\r\n' : '250 2.0.0 Ok: queued\r\n');
          transfer = undefined;
        }
        return;
      }
      buf += chunk.toString('latin1');
      for (let lf = buf.indexOf('\n'); lf >= 0; lf = buf.indexOf('\n')) {
        const verb = buf.slice(0, 4).toUpperCase();
        buf = buf.slice(lf + 1);
        if (verb === 'EHLO') socket.write('250-early.test\r\n250 PIPELINING\r\n');
        else if (verb === 'DATA') {
          transfer = { bytes: '', closed: false };
          this.transfers.push(transfer);
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') socket.end('221 2.0.0 Bye\r\n');
        else socket.write('250 2.0.0 Ok\r\n');
      }
    });
  }
}

/** Blocks this process (node, client and backend all live in it) so both writes wait in the kernel. */
function blockEventLoop(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

async function openTransaction(lb: TestNode): Promise<SmtpDialog> {
  const c = (await SmtpDialog.open(lb.port)).noDelay();
  await c.read();
  await c.cmd('EHLO client.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  assert.equal((await c.cmd('RCPT TO:<b@example.test>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  return c;
}

async function metricLines(lb: TestNode): Promise<string[]> {
  const admin = lb.node.adminAddress!;
  const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith('smtp_lb_backend_replies_total{'));
}

const earlyCount = async (lb: TestNode) =>
  (await metricLines(lb))
    .filter((l) => l.includes('command="data"') && l.includes('code="EPROTOCOL"'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);

describe('a backend reply before our final dot is never relayed as the answer', { timeout: 60_000 }, () => {
  const backend = new EarlyBackend();
  let lb: TestNode;
  before(async () => {
    backend.server.listen(0, '127.0.0.1');
    await once(backend.server, 'listening');
    lb = await startNode(simpleConfig([backend.address]));
  });
  after(async () => {
    await lb?.stop();
    backend.server.close();
  });

  async function assertRefusedWithoutDot(c: SmtpDialog, counted: number): Promise<void> {
    const r = await c.read();
    assert.match(r.raw, /^451 4\.4\.2 /, `the client got ${JSON.stringify(r.raw)}, not the early 250`);
    assert.equal((await c.cmd('QUIT')).code, 221);
    c.close();
    await sleep(200);
    const t = backend.transfers.at(-1)!;
    assert.equal(t.bytes.includes('\r\n.\r\n'), false, 'our final dot never reached the backend');
    assert.equal(t.closed, true, 'the node dropped the backend connection');
    assert.ok(
      lb.logs.some((l) => JSON.stringify(l).includes('before our final dot reached it')),
      'a log line says what the backend did',
    );
    assert.equal(await earlyCount(lb), counted, 'counted in smtp_lb_backend_replies_total');
  }

  test('the early 250 arrives together with the client’s dot (the client sent body and dot in one go)', async () => {
    const c = await openTransaction(lb);
    const atBackend = new Promise<net.Socket>((resolve) => {
      backend.onContent = resolve;
    });
    c.write('Subject: early\r\n\r\nfirst part\r\n');
    const socket = await atBackend;
    // The client's last bytes (with its dot) and the backend's 250 reach the node in the same turn of
    // its event loop, the dot first: our own dot is still waiting to be written when the 250 is read.
    c.write('second part\r\n.\r\n');
    socket.write('250 2.0.0 Ok: queued as EARLY\r\n');
    blockEventLoop(50);
    await assertRefusedWithoutDot(c, 1);
  });

  test('the early 250 arrives before the client’s dot', async () => {
    const c = await openTransaction(lb);
    backend.onContent = (socket) => socket.write('250 2.0.0 Ok: queued as EARLY\r\n');
    c.write('Subject: early\r\n\r\nfirst part\r\n');
    await sleep(200);
    c.write('second part\r\n.\r\n');
    await assertRefusedWithoutDot(c, 2);
  });

  test('a backend that answers only at our dot is relayed as before', async () => {
    backend.early = false;
    const c = await openTransaction(lb);
    c.write('Subject: fine\r\n\r\nbody\r\n.\r\n');
    const r = await c.read();
    assert.match(r.raw, /^250 2\.0\.0 Ok: queued/);
    assert.equal((await c.cmd('QUIT')).code, 221);
    c.close();
    assert.equal(await earlyCount(lb), 2);
  });
});
