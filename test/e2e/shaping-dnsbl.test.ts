// DNSBL / DNSWL scoring against a real DNS server (dnsmasq on a free port): a listed client is
// refused (554 5.7.1) or tarpitted, an answer outside the zone's code filter does not count, an
// allow-list zone with a negative weight cancels a listing, answers are cached for their TTL, and
// a resolver that never answers fails open within the timeout.
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { type CaptureBackend, type Dnsmasq, startCaptureBackend, startDnsmasq } from '@smtp-lb/testkit';
import type { TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';
import { fromClient, startShapingNode, waitForLog } from './shaping-helpers.js';

async function greeting(port: number, from: string) {
  const c = await SmtpDialog.open(port, '127.0.0.1', from);
  const t0 = Date.now();
  const r = await c.read();
  const ms = Date.now() - t0;
  c.close();
  return { ...r, ms };
}

describe('DNSBL and DNSWL', { timeout: 60_000 }, () => {
  let dns: Dnsmasq;
  let backend: CaptureBackend;
  let silent: Socket;
  const nodes: TestNode[] = [];
  before(async () => {
    backend = await startCaptureBackend();
    dns = await startDnsmasq({
      zones: ['bl.test', 'wl.test'],
      records: {
        '2.0.0.127.bl.test': '127.0.0.2',
        '3.0.0.127.bl.test': '127.0.0.99',
        '4.0.0.127.bl.test': '127.0.0.4',
        '4.0.0.127.wl.test': '127.0.0.1',
        '6.0.0.127.bl.test': '127.0.0.3',
      },
    });
    // A "resolver" that swallows every query: the lookups must time out and fail open.
    silent = createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    silent?.close();
    await dns?.stop();
    await backend?.close();
  });
  const start = async (shaping: string) => {
    const n = await startShapingNode({ backend: backend.address, shaping });
    nodes.push(n);
    return n;
  };
  const zones = (resolver: string, action = 'reject') => `  dnsbl:
    zones:
      - { zone: bl.test, weight: 2, codes: ['127.0.0.[2..11]'] }
      - { zone: wl.test, weight: -5 }
    threshold: 2
    action: ${action}
    resolvers: [${resolver}]
    timeout: 400ms
  tarpit: { delay: 500ms }
`;

  test('a listed client is refused with 554 5.7.1; filtered answers and DNSWL do not count; answers are cached', async () => {
    const lb = await start(zones(dns.address));
    const listed = await greeting(lb.port, '127.0.0.2');
    assert.equal(listed.code, 554);
    assert.match(listed.raw, /^554 5\.7\.1 Service unavailable; client \[127\.0\.0\.2\] blocked using DNSBL/);
    const line = await waitForLog(lb, 'client listed by DNSBL', fromClient('127.0.0.2'));
    assert.equal(line.score, 2);
    assert.deepEqual(line.zones, [{ zone: 'bl.test', status: 'listed', answers: ['127.0.0.2'], weight: 2 }]);

    assert.equal((await greeting(lb.port, '127.0.0.3')).code, 220, '127.0.0.99 is outside the code filter');
    assert.equal((await greeting(lb.port, '127.0.0.4')).code, 220, 'the DNSWL listing cancels it');
    assert.equal((await greeting(lb.port, '127.0.0.5')).code, 220, 'not listed anywhere');

    // dnsmasq's query log reaches us through a pipe: wait until the first lookup shows in it.
    const count = () => dns.queries().filter((q) => q === '2.0.0.127.bl.test').length;
    for (let i = 0; i < 100 && count() === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const asked = count();
    assert.equal(asked, 1);
    assert.equal((await greeting(lb.port, '127.0.0.2')).code, 554);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(count(), asked, 'the second lookup came from the cache');
  });

  test('with action tarpit the listed client is slowed down, not refused', async () => {
    const lb = await start(zones(dns.address, 'tarpit'));
    const g = await greeting(lb.port, '127.0.0.6');
    assert.equal(g.code, 220);
    assert.ok(g.ms >= 450, `greeting held ${g.ms} ms`);
    const line = await waitForLog(lb, 'session tarpitted', fromClient('127.0.0.6'));
    assert.equal(line.reason, 'dnsbl');
  });

  test('a resolver that never answers: the lookup times out and the client is let in', async () => {
    const port = (silent.address() as { port: number }).port;
    const lb = await start(zones(`127.0.0.1:${port}`));
    const g = await greeting(lb.port, '127.0.0.2');
    assert.equal(g.code, 220);
    assert.ok(g.ms >= 350 && g.ms < 5000, `answered after the timeout (${g.ms} ms)`);
    const line = await waitForLog(lb, 'DNSBL score below the threshold', fromClient('127.0.0.2'));
    assert.deepEqual(
      (line.zones as Array<{ status: string }>).map((z) => z.status),
      ['error', 'error'],
    );
  });
});
