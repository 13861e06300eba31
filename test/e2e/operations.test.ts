// What an operator touches: /metrics (read by a real Prometheus text-format parser and promtool),
// /healthz, /readyz, /status, SIGTERM drain and SIGHUP reload of a node run from the command line.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { RedisKeys } from '@smtp-lb/ledger';
import { freePort, runCommand, startCaptureBackend, startRedis } from '@smtp-lb/testkit';
import { Redis } from 'ioredis';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

const CLI = resolve(import.meta.dirname, '../../../packages/proxy/dist/src/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-ops-'));
const cleanup = cleanupAfterAll();

interface Family {
  name: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string> }>;
}

function value(families: Family[], name: string, labels: Record<string, string> = {}): number {
  const f = families.find((x) => x.name === name);
  assert.ok(f, `metric ${name} missing`);
  const m = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return m?.value === undefined ? 0 : Number(m.value);
}

async function sendMessage(port: number, to = 'b@example.test'): Promise<number> {
  const c = await SmtpDialog.open(port);
  await c.read();
  await c.cmd('EHLO ops.test');
  await c.cmd('MAIL FROM:<a@example.org>');
  await c.cmd(`RCPT TO:<${to}>`);
  await c.cmd('DATA');
  const r = await c.cmd('Subject: ops\r\n\r\nhello\r\n.');
  await c.cmd('QUIT');
  c.close();
  return r.code;
}

describe('admin HTTP', { timeout: 60_000 }, () => {
  test('/metrics moves with traffic and passes promtool; /healthz, /readyz, /status answer', async () => {
    const backend = await startCaptureBackend({
      reply: ({ verb, arg }) =>
        verb === 'RCPT' && arg.includes('nobody') ? '550 5.1.1 no such user' : undefined,
    });
    const lb = await startNode(simpleConfig([{ address: backend.address, maxConnections: 7, weight: 3 }]));
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const admin = `http://127.0.0.1:${lb.node.adminAddress!.port}`;
    const scrape = async () =>
      parsePrometheusTextFormat(await (await fetch(`${admin}/metrics`)).text()) as Family[];

    const before = await scrape();
    assert.equal(await sendMessage(lb.port), 250);
    const refused = await SmtpDialog.open(lb.port);
    await refused.read();
    await refused.cmd('EHLO r.test');
    await refused.cmd('MAIL FROM:<a@example.org>');
    assert.equal((await refused.cmd('RCPT TO:<nobody@example.test>')).code, 550);
    refused.close();
    const held = await SmtpDialog.open(lb.port);
    await held.read();
    await held.cmd('EHLO held.test');
    await held.cmd('MAIL FROM:<a@example.org>');
    await held.cmd('RCPT TO:<b@example.test>');
    const during = await scrape();
    const id = backend.address;
    assert.equal(value(during, 'smtp_lb_backend_connections', { backend: id, scope: 'node' }), 1);
    assert.equal(value(during, 'smtp_lb_backend_max_connections', { backend: id }), 7);
    assert.equal(value(during, 'smtp_lb_sessions_active'), 1);
    assert.equal(
      value(during, 'smtp_lb_transactions_total', { backend: id, result: 'accepted' }) -
        value(before, 'smtp_lb_transactions_total', { backend: id, result: 'accepted' }),
      1,
    );
    assert.equal(
      value(during, 'smtp_lb_backend_replies_total', { backend: id, command: 'RCPT', code: '550' }),
      1,
    );
    assert.equal(value(during, 'smtp_lb_discovery_backends', { pool: 'default', state: 'passing' }), 1);
    assert.equal(value(during, 'smtp_lb_ledger_degraded'), 0);

    // prom-client's own nodejs_active_*_total gauges break a naming rule; ours are what is checked.
    const text = (await (await fetch(`${admin}/metrics`)).text())
      .split('\n')
      .filter((l) => !l.includes('nodejs_active_'))
      .join('\n');
    assert.match(text, /^smtp_lb_sessions_active /m);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(lint.status, 0, lint.stdout + lint.stderr);

    assert.equal((await fetch(`${admin}/healthz`)).status, 200);
    assert.equal((await fetch(`${admin}/readyz`)).status, 200);
    const status = (await (await fetch(`${admin}/status`)).json()) as {
      pools: Array<{
        backends: Array<{ id: string; weight: number; maxConnections: number; nodeConnections: number }>;
      }>;
      ledger: { mode: string };
    };
    assert.equal(status.ledger.mode, 'memory');
    assert.deepEqual(
      status.pools[0]!.backends.map((b) => [b.id, b.weight, b.maxConnections, b.nodeConnections]),
      [[id, 3, 7, 1]],
    );
    // The same, as the operator's table.
    // (spawned asynchronously: the node lives in this process and must keep answering)
    const table = await runCommand(process.execPath, [CLI, 'status', '--admin', admin], {
      timeoutMs: 20_000,
    });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /ledger memory/);
    assert.match(
      table.stdout,
      new RegExp(`default\\s+${id.replace(/\./g, '\\.')}\\s+3\\s+7\\s+1\\s+1\\s+ok`),
    );
    held.close();
  });

  test('/status asks for the bearer token when one is set', async () => {
    const backend = await startCaptureBackend();
    const lb = await startNode(
      simpleConfig([backend.address]).replace(
        'admin: { listen: 127.0.0.1:0 }',
        'admin: { listen: 127.0.0.1:0, token: s3cret }',
      ),
    );
    cleanup.push(
      () => lb.stop(),
      () => backend.close(),
    );
    const url = `http://127.0.0.1:${lb.node.adminAddress!.port}/status`;
    assert.equal((await fetch(url)).status, 401);
    assert.equal((await fetch(url, { headers: { authorization: 'Bearer s3cret' } })).status, 200);
  });
});

async function startCli(yaml: string) {
  const file = join(dir, `node-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  cleanup.push(() => {
    child.kill('SIGKILL');
  });
  return { child, file, exited, output: () => out };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('signals', { timeout: 90_000 }, () => {
  test('SIGTERM: readiness drops, a message mid-DATA completes with 250, new connections are refused, exit 0, slots free in Redis', async () => {
    const backend = await startCaptureBackend();
    const redis = await startRedis();
    const admin$ = new Redis(redis.url);
    cleanup.push(
      () => backend.close(),
      () => redis.stop(),
      () => void admin$.disconnect(),
    );
    const [port, adminPort] = [await freePort(), await freePort()];
    const yaml = simpleConfig([backend.address])
      .replace('127.0.0.1:0', `127.0.0.1:${port}`)
      .replace(
        'admin: { listen: 127.0.0.1:0 }',
        `admin: { listen: 127.0.0.1:${adminPort} }\ndrainTimeout: 20s\nledger: { redis: "${redis.url}", keyPrefix: drain }`,
      );
    const counts = new RedisKeys('drain').backend(backend.address).counts;
    const node = await startCli(yaml);
    const admin = `http://127.0.0.1:${adminPort}`;
    await waitFor('ready', async () => ((await fetch(`${admin}/readyz`)).status === 200 ? true : undefined));

    const busy = await SmtpDialog.open(port);
    await busy.read();
    await busy.cmd('EHLO busy.test');
    await busy.cmd('MAIL FROM:<a@example.org>');
    assert.equal((await busy.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await busy.cmd('DATA')).code, 354);
    busy.write('Subject: drain\r\n\r\nfirst half\r\n');
    assert.deepEqual(
      await admin$.hgetall(counts),
      { 'test-node': '1' },
      'the busy session holds a slot in Redis',
    );

    const idle = await SmtpDialog.open(port);
    assert.equal((await idle.read()).code, 220);
    await idle.cmd('EHLO idle.test');

    const started = Date.now();
    node.child.kill('SIGTERM');
    // The idle session is told 421 4.3.2 and closed.
    const told = await idle.read();
    assert.match(told.raw, /^421 4\.3\.2 /);
    await idle.waitClosed();
    // Readiness is false (or the admin server is already gone) and no new session is accepted.
    const ready = await fetch(`${admin}/readyz`).then(
      (r) => r.status,
      () => 0,
    );
    assert.notEqual(ready, 200);
    const refused = await SmtpDialog.open(port).then(
      async (c) => {
        const r = await c.read().catch(() => undefined);
        c.close();
        return r?.code ?? 0;
      },
      () => 0,
    );
    assert.ok(refused === 0 || refused === 421, `new connection got ${refused}`);
    // The transaction in flight completes.
    busy.write('second half\r\n');
    const done = await busy.cmd('.');
    assert.equal(done.code, 250, done.raw);
    assert.equal(backend.messages.length, 1);
    const code = await node.exited;
    assert.equal(code, 0, node.output());
    assert.ok(Date.now() - started < 20_000, 'exited before the drain timeout');
    const left = Object.values(await admin$.hgetall(counts)).reduce((n: number, v) => n + Number(v), 0);
    assert.equal(left, 0, 'the node left no slot counted in Redis');
  });

  test('SIGHUP: a pool change applies to the next session while one in flight completes; a bad file changes nothing', async () => {
    const a = await startCaptureBackend();
    const b = await startCaptureBackend();
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    const port = await freePort();
    const yamlFor = (backend: string) =>
      simpleConfig([backend])
        .replace('127.0.0.1:0', `127.0.0.1:${port}`)
        .replace('log: { level: debug }', 'log: { level: info }');
    const node = await startCli(yamlFor(a.address));
    await waitFor('listening', async () => {
      const c = await SmtpDialog.open(port);
      c.close();
      return true;
    });
    const inflight = await SmtpDialog.open(port);
    await inflight.read();
    await inflight.cmd('EHLO x.test');
    await inflight.cmd('MAIL FROM:<a@example.org>');
    assert.equal((await inflight.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await inflight.cmd('DATA')).code, 354);

    writeFileSync(node.file, yamlFor(b.address));
    node.child.kill('SIGHUP');
    await waitFor('reload', async () =>
      node.output().includes('configuration reloaded') ? true : undefined,
    );
    assert.equal((await inflight.cmd('Subject: before\r\n\r\nstarted before the reload\r\n.')).code, 250);
    assert.equal(a.messages.length, 1, 'the transaction in flight finished on the old backend');
    assert.equal(await sendMessage(port), 250);
    assert.equal(b.messages.length, 1, 'the next session went to the new pool');

    writeFileSync(node.file, 'listeners: nope\n');
    node.child.kill('SIGHUP');
    await waitFor('refusal', async () => (node.output().includes('reload refused') ? true : undefined));
    assert.equal(await sendMessage(port), 250);
    assert.equal(b.messages.length, 2, 'the running config stayed');
    inflight.close();
    node.child.kill('SIGTERM');
    assert.equal(await node.exited, 0);
  });
});
