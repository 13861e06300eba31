// Consul going away and coming back, on an agent of its own (the other tests need theirs up).
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { type ConsulAgent, startConsul } from '@smtp-lb/testkit';
import { ConsulSource, type DiscoveryError } from '../src/index.js';
import { ids, memoryLogger, nextSet } from './watch.js';

let consul: ConsulAgent;

before(async () => {
  consul = await startConsul();
});

after(async () => {
  await consul.stop();
});

test('Consul down: last set kept, stale flagged, retries back off; Consul back: watching resumes', {
  timeout: 60_000,
}, async (t) => {
  const log = memoryLogger();
  const errors: DiscoveryError[] = [];
  const staleChanges: boolean[] = [];
  await consul.register({ id: 'mta-a', name: 'outage', address: '127.0.0.1', port: 2525 });
  const source = new ConsulSource({
    pool: 'outage',
    service: 'outage',
    consul: { address: consul.address },
    defaultMaxConnections: 100,
    logger: log,
    onError: (err) => errors.push(err),
    onStaleChange: (stale) => staleChanges.push(stale),
    waitMs: 5_000,
    retry: { minDelayMs: 100, maxDelayMs: 1_000 },
  });
  try {
    await nextSet(source, (b) => b.length === 1);
    await consul.kill();

    // Something that counts every connection on Consul's port and drops it: a tight loop would show here.
    const sockets: Socket[] = [];
    const counter = createServer((s) => {
      sockets.push(s);
      s.destroy();
    });
    await new Promise<void>((r) => counter.listen(consul.httpPort, '127.0.0.1', () => r()));
    await new Promise((r) => setTimeout(r, 3_000));
    await new Promise<void>((r) => counter.close(() => r()));

    t.diagnostic(`requests while Consul was down: ${sockets.length} in 3 s (${errors.length} errors in all)`);
    assert.deepEqual(ids(source.current()), ['127.0.0.1:2525'], 'last known set kept');
    assert.equal(source.stale, true);
    assert.deepEqual(staleChanges, [true]);
    assert.ok(sockets.length >= 2, `retried ${sockets.length} times in 3 s`);
    assert.ok(sockets.length <= 15, `${sockets.length} requests in 3 s is a tight loop`);
    assert.ok(errors.length >= sockets.length);
    // The blocking query in flight when the agent stops may get Consul's own 500 (it cancels its
    // blocking queries on shutdown); everything after that finds nobody there.
    const [first, ...rest] = errors;
    const codes = errors.map((e) => `${e.code} ${e.message}`).join('; ');
    assert.ok(
      first!.code === 'DISCOVERY_CONSUL_UNREACHABLE' ||
        (first!.code === 'DISCOVERY_CONSUL_HTTP' && first!.status === 500),
      codes,
    );
    assert.ok(
      rest.every((e) => e.code === 'DISCOVERY_CONSUL_UNREACHABLE'),
      codes,
    );
    assert.ok(log.lines.some((l) => l.level === 'warn' && l.msg.includes('keeping last known backends')));

    await consul.start();
    const resumed = nextSet(source, (b) => ids(b).includes('127.0.0.9:2525'), 15_000);
    await consul.register({ id: 'mta-b', name: 'outage', address: '127.0.0.9', port: 2525 });
    await resumed;
    assert.equal(source.stale, false);
    assert.deepEqual(staleChanges, [true, false]);
    assert.ok(log.lines.some((l) => l.level === 'info' && l.msg === 'consul reachable again'));
  } finally {
    await source.close();
  }
});
