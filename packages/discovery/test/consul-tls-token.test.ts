// The Consul source against a real agent that serves its API over TLS with a private (self-signed)
// certificate and denies reads without an ACL token: the CA file and the token must both reach it.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type ConsulAgent, selfSignedCert, startConsul } from '@smtp-lb/testkit';
import { ConsulSource, type ConsulSourceOptions, type DiscoveryError } from '../src/index.js';
import { ids, nextSet } from './watch.js';

const TOKEN = '4d6f2a51-7a8e-4c1b-9d0e-2f3a4b5c6d7e';
let consul: ConsulAgent;
let dir: string;
let caFile: string;
const sources: ConsulSource[] = [];

before(async () => {
  const cert = await selfSignedCert();
  dir = mkdtempSync(join(tmpdir(), 'smtp-lb-consul-ca-'));
  caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, cert.cert);
  consul = await startConsul({ tls: cert, managementToken: TOKEN });
  await consul.register({ id: 'secure-1', name: 'secure', address: '127.0.0.1', port: 2525 });
});

after(async () => {
  await Promise.all(sources.map((s) => s.close()));
  await consul.stop();
  rmSync(dir, { recursive: true, force: true });
});

function watch(consulOpts: ConsulSourceOptions['consul'], onError?: (e: DiscoveryError) => void) {
  const source = new ConsulSource({
    pool: 'secure',
    service: 'secure',
    consul: consulOpts,
    defaultMaxConnections: 100,
    retry: { minDelayMs: 100, maxDelayMs: 500 },
    ...(onError ? { onError } : {}),
  });
  sources.push(source);
  return source;
}

test('over https with the private CA and the token, the instance is found', { timeout: 20_000 }, async () => {
  const source = watch({ address: consul.httpsAddress!, ca: caFile, token: TOKEN });
  const { backends } = await nextSet(source, (b) => b.length === 1, 10_000);
  assert.deepEqual(ids(backends), ['127.0.0.1:2525']);
  assert.equal(source.stale, false);
});

test('without the token, ACLs hide the instance: a known, empty set', { timeout: 20_000 }, async () => {
  const source = watch({ address: consul.httpsAddress!, ca: caFile });
  await nextSet(source, () => true, 10_000);
  assert.equal(source.ready, true);
  assert.deepEqual(source.current(), []);
});

test('without the CA, the certificate is refused: not ready, errors counted', {
  timeout: 20_000,
}, async () => {
  const errors: DiscoveryError[] = [];
  const source = watch({ address: consul.httpsAddress!, token: TOKEN }, (e) => errors.push(e));
  for (let i = 0; i < 100 && errors.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(errors.length >= 2, `${errors.length} errors`);
  assert.equal(source.ready, false);
  assert.ok(
    errors.every((e) => e.code === 'DISCOVERY_CONSUL_UNREACHABLE'),
    errors.map((e) => e.code).join(),
  );
  assert.match(errors[0]!.message, /certificate/i);
});
