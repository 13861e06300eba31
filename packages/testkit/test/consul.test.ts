// The Consul helper drives every discovery test, so what it does is checked against Consul's own view:
// the health endpoint (passing filter), the catalog, and the agent's leader.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { type ConsulAgent, startConsul } from '../src/consul.js';

let consul: ConsulAgent;

before(async () => {
  consul = await startConsul();
});

after(async () => {
  await consul.stop();
});

interface HealthEntry {
  Service: {
    ID: string;
    Address: string;
    Port: number;
    Tags: string[];
    Meta: Record<string, string>;
    Weights: { Passing: number; Warning: number };
  };
  Checks: { CheckID: string; Status: string }[];
}

async function health(service: string, passing: boolean): Promise<HealthEntry[]> {
  const res = await fetch(`${consul.address}/v1/health/service/${service}${passing ? '?passing=true' : ''}`);
  assert.equal(res.status, 200);
  return (await res.json()) as HealthEntry[];
}

test('the agent runs on its own loopback port with a leader', { timeout: 15_000 }, async () => {
  assert.match(consul.address, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(consul.httpPort, 8500, 'must not take the default port');
  const leader = (await (await fetch(`${consul.address}/v1/status/leader`)).json()) as string;
  assert.match(leader, /^127\.0\.0\.1:\d+$/);
});

test('register, fail, pass, maintenance and deregister show in Consul health', {
  timeout: 15_000,
}, async () => {
  await consul.register({
    id: 'kit-1',
    name: 'kit',
    address: '127.0.0.7',
    port: 2525,
    tags: ['smtp'],
    meta: { 'smtp-lb-max-connections': '9' },
    weights: { passing: 4, warning: 2 },
  });
  const [entry] = await health('kit', true);
  assert.equal(entry?.Service.ID, 'kit-1');
  assert.equal(entry?.Service.Address, '127.0.0.7');
  assert.equal(entry?.Service.Port, 2525);
  assert.deepEqual(entry?.Service.Tags, ['smtp']);
  assert.deepEqual(entry?.Service.Meta, { 'smtp-lb-max-connections': '9' });
  assert.deepEqual(entry?.Service.Weights, { Passing: 4, Warning: 2 });
  assert.equal(entry?.Checks.find((c) => c.CheckID === 'service:kit-1')?.Status, 'passing');

  await consul.failCheck('kit-1');
  assert.deepEqual(await health('kit', true), []);
  await consul.passCheck('kit-1');
  assert.equal((await health('kit', true)).length, 1);

  await consul.maintenance('kit-1', true);
  assert.deepEqual(await health('kit', true), []);
  const all = await health('kit', false);
  assert.ok(
    all[0]?.Checks.some((c) => c.CheckID.startsWith('_service_maintenance:') && c.Status === 'critical'),
  );
  await consul.maintenance('kit-1', false);
  assert.equal((await health('kit', true)).length, 1);

  await consul.deregister('kit-1');
  assert.deepEqual(await health('kit', false), []);
});

test('an instance registered critical is not passing', { timeout: 15_000 }, async () => {
  await consul.register({
    id: 'kit-2',
    name: 'kit-critical',
    address: '127.0.0.8',
    port: 25,
    status: 'critical',
  });
  assert.deepEqual(await health('kit-critical', true), []);
  assert.equal((await health('kit-critical', false)).length, 1);
});

test('restart comes back on the same address with a leader; kill frees the port', {
  timeout: 40_000,
}, async () => {
  await consul.restart();
  const leader = (await (await fetch(`${consul.address}/v1/status/leader`)).json()) as string;
  assert.match(leader, /^127\.0\.0\.1:\d+$/);
  await consul.kill();
  const refused = await new Promise<boolean>((resolve) => {
    const s = connect(consul.httpPort, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
  assert.equal(refused, true, 'nothing listens after kill');
  await consul.start();
  assert.equal((await fetch(`${consul.address}/v1/status/leader`)).status, 200);
});
