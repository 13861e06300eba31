// Department routing and recipient verification by recipient maps (issue 18), end to end: one company
// domain, two department Postfix instances, one node whose listeners look recipients up in an LDAP
// directory (a real slapd), a Postfix-style file and Redis. Each recipient's mail arrives at its
// department; a message to both departments gets the 452 split; an unknown recipient gets 550 5.1.1
// and no backend sees a connection; a directory that is stopped, hangs or answers garbage gives
// 451 4.3.0 and a log line while the node serves other sessions; a 10 000-recipient dictionary attack
// costs no backend connection and ends tarpitted.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { formatStatus, type NodeStatus } from '@smtp-lb/proxy';
import {
  type CaptureBackend,
  finalDataReply,
  makeTempDir,
  type PostfixInstance,
  type RedisCluster,
  type RedisServer,
  runSwaks,
  type SlapdServer,
  startCaptureBackend,
  startPostfix,
  startRedis,
  startRedisCluster,
  startSlapd,
  type TempDir,
} from '@smtp-lb/testkit';
import { Cluster, Redis } from 'ioredis';

import { configFrom, startNode, type TestNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';
import { metric, waitForLog } from './shaping-helpers.js';

const T = { timeout: 120_000 };

// Department of each person, as the directory, the file and Redis say it.
const people = {
  ldap: { 'alice@example.com': 'sales', 'bob@example.com': 'eng', 'gina@example.com': 'eng' },
  file: { 'carol@example.com': 'sales', 'dave@example.com': 'eng' },
  redis: { 'erin@example.com': 'sales', 'frank@example.com': 'eng' },
} as const;

let slapd: SlapdServer;
let redis: RedisServer;
let admin: Redis;
let dir: TempDir;
let sales: PostfixInstance;
let eng: PostfixInstance;
let lb: TestNode;
let yaml: string;
const silent: net.Server[] = [];
const sockets = new Set<net.Socket>();

async function fakeLdap(onData: (c: net.Socket) => void): Promise<string> {
  const s = net.createServer((c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.on('error', () => {});
    c.on('data', () => onData(c));
  });
  silent.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return `ldap://127.0.0.1:${(s.address() as net.AddressInfo).port}`;
}

function port(listener: string): number {
  return lb.node.addresses.get(listener)!.port;
}

/** Lines of a Postfix log that show a client connecting (its readiness probe included). */
async function connects(pf: PostfixInstance): Promise<number> {
  return ((await pf.log()).match(/smtpd\[\d+\]: connect from /g) ?? []).length;
}

async function rcptReplies(listener: string, recipients: string[]): Promise<[string, ...string[]]> {
  const c = await SmtpDialog.open(port(listener));
  try {
    await c.read();
    await c.cmd('EHLO client.test');
    assert.equal((await c.cmd('MAIL FROM:<someone@partner.test>')).code, 250);
    const out: string[] = [];
    for (const r of recipients) out.push((await c.cmd(`RCPT TO:<${r}>`)).raw.trimEnd());
    await c.cmd('QUIT');
    return out as [string, ...string[]];
  } finally {
    c.close();
  }
}

before(async () => {
  [slapd, redis, dir, sales, eng] = await Promise.all([
    startSlapd(),
    startRedis(),
    makeTempDir('rcptmaps-e2e'),
    startPostfix({ hostname: 'sales.example.test' }),
    startPostfix({ hostname: 'eng.example.test' }),
  ]);
  await slapd.add(
    Object.entries(people.ldap)
      .map(([mail, dept]) => {
        const uid = mail.split('@')[0];
        return `dn: uid=${uid},${slapd.people}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\nmail: ${mail}\ndepartmentNumber: ${dept}\n`;
      })
      .join('\n'),
  );
  const file = join(dir.path, 'staff.map');
  await writeFile(
    file,
    `# one line per person: address, then the pool of the department\n${Object.entries(people.file)
      .map(([a, d]) => `${a}\t${d}`)
      .join('\n')}\n`,
  );
  admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  for (const [a, d] of Object.entries(people.redis)) await admin.set(`e2e:rcpt:${a}`, d);
  const hung = await fakeLdap(() => {});
  const garbage = await fakeLdap((c) => c.write(Buffer.from('\x30\x84\xff\xff\xff\xff\x02\x01\x01garbage')));
  const listener = (name: string, map: string) =>
    `  - { name: ${name}, listen: 127.0.0.1:0, hostname: mx.example.com, pool: sales, recipients: { map: ${map} } }`;
  yaml = `
node: { id: rcptmaps-e2e }
listeners:
${listener('ldap', 'staff')}
${listener('file', 'files')}
${listener('redis', 'shared')}
${listener('hung', 'hung')}
${listener('garbage', 'garbage')}
  - { name: passing, listen: 127.0.0.1:0, hostname: mx.example.com, pool: sales, recipients: { map: files, unknown: pass } }
pools:
  sales: { static: [{ address: ${sales.address} }], tls: none }
  eng: { static: [{ address: ${eng.address} }], tls: none }
routes:
  - { listener: ldap, recipientMap: staff }
  - { listener: file, recipientMap: files }
  - { listener: redis, recipientMap: shared }
recipientMaps:
  staff:
    ldap: { url: ${slapd.url}, base: "${slapd.people}", filter: "(mail=%s)", attribute: departmentNumber }
    timeout: 1s
    cacheTtl: 0
  files: { file: ${file} }
  shared: { redis: { url: ${redis.url}, prefix: "e2e:rcpt:" }, cacheTtl: 0 }
  hung: { ldap: { url: ${hung}, base: "${slapd.people}" }, timeout: 500ms }
  garbage: { ldap: { url: ${garbage}, base: "${slapd.people}" }, timeout: 500ms }
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`;
  lb = await startNode(yaml);
});

after(async () => {
  await lb?.stop();
  admin?.disconnect();
  for (const c of sockets) c.destroy();
  for (const s of silent) s.close();
  await Promise.all([slapd?.stop(), redis?.stop(), sales?.stop(), eng?.stop(), dir?.remove()]);
});

describe('routing and verification by recipient map', T, () => {
  for (const kind of ['ldap', 'file', 'redis'] as const) {
    test(`${kind}: each recipient's mail arrives at its department's Postfix`, async () => {
      for (const [address, dept] of Object.entries(people[kind])) {
        if (address === 'gina@example.com') continue;
        const res = await runSwaks({
          server: `127.0.0.1:${port(kind)}`,
          from: 'someone@partner.test',
          to: address,
          body: `for ${address}`,
          timeoutMs: 20_000,
        });
        assert.equal(finalDataReply(res.transcript)?.code, 250, res.stdout);
        const [here, there] = dept === 'sales' ? [sales, eng] : [eng, sales];
        await here.waitForLog(new RegExp(`to=<${address.replace('.', '\\.')}>.*status=sent`), 20_000);
        assert.doesNotMatch(await there.log(), new RegExp(`to=<${address}>`));
      }
    });
  }

  test('a message to both departments: the second gets 452 4.5.3 and the first is delivered', async () => {
    const c = await SmtpDialog.open(port('ldap'));
    try {
      await c.read();
      await c.cmd('EHLO client.test');
      await c.cmd('MAIL FROM:<someone@partner.test>');
      assert.equal((await c.cmd('RCPT TO:<alice@example.com>')).code, 250);
      const other = await c.cmd('RCPT TO:<bob@example.com>');
      assert.equal(
        other.raw,
        '452 4.5.3 Recipient belongs to another route, send it in a new transaction\r\n',
      );
      assert.equal((await c.cmd('DATA')).code, 354);
      assert.equal((await c.cmd('Subject: split\r\n\r\nfor alice only\r\n.')).code, 250);
      await c.cmd('QUIT');
    } finally {
      c.close();
    }
    await sales.waitForLog(/to=<alice@example\.com>.*status=sent[\s\S]*to=<alice@example\.com>.*status=sent/);
  });

  test('an unknown recipient: 550 5.1.1 from the node, and no backend saw a connection', async () => {
    const before = [await connects(sales), await connects(eng)];
    const unknownBefore = await metric(
      lb,
      'smtp_lb_recipient_lookups_total',
      '{map="staff",result="unknown"}',
    ).catch(() => 0);
    for (const listener of ['ldap', 'file', 'redis']) {
      const [r] = await rcptReplies(listener, ['mallory@example.com']);
      assert.equal(r, '550 5.1.1 <mallory@example.com>: Recipient address rejected: User unknown');
    }
    await new Promise((r) => setTimeout(r, 500)); // postlogd writes the maillog a moment later
    assert.deepEqual([await connects(sales), await connects(eng)], before);
    assert.equal(
      await metric(lb, 'smtp_lb_recipient_lookups_total', '{map="staff",result="unknown"}'),
      unknownBefore + 1,
    );
    assert.ok((await metric(lb, 'smtp_lb_recipient_lookup_seconds_count', '{map="staff"}')) >= 1);
  });

  test('a known recipient: the listener check and the route ask the map once between them (cacheTtl 0)', async () => {
    const found = () =>
      metric(lb, 'smtp_lb_recipient_lookups_total', '{map="staff",result="found"}').catch(() => 0);
    const before = await found();
    const [r] = await rcptReplies('ldap', ['alice@example.com']);
    assert.match(r, /^250 /);
    // Before, `recipients: { map: staff }` and `recipientMap: staff` each asked slapd: 2 lookups.
    assert.equal(await found(), before + 1);
  });

  test('LDAP stopped: 451 4.3.0 (never 550), a log line, other sessions served; back: found again', async () => {
    await slapd.down();
    try {
      const [r] = await rcptReplies('ldap', ['gina@example.com']);
      assert.equal(r, '451 4.3.0 <gina@example.com>: Temporary recipient lookup failure, try again later');
      const line = await waitForLog(lb, 'recipient map failed', (l) => l.map === 'staff');
      assert.equal(line.to, 'gina@example.com');
      assert.ok(typeof line.sid === 'string' && typeof line.reason === 'string');
      const served = await rcptReplies('file', ['carol@example.com']);
      assert.match(served[0]!, /^250 /);
      const status = lb.node.status().recipientMaps.find((m) => m.name === 'staff');
      assert.equal(status?.state, 'failing');
    } finally {
      await slapd.restart();
    }
    const [back] = await rcptReplies('ldap', ['gina@example.com']);
    assert.match(back, /^250 /);
  });

  test('LDAP hanging or answering garbage: 451 4.3.0 within the timeout; a session alongside is served', async () => {
    const started = Date.now();
    const hanging = rcptReplies('hung', ['alice@example.com']);
    const alongside = await rcptReplies('file', ['dave@example.com']);
    assert.match(alongside[0]!, /^250 /);
    const [hung] = await hanging;
    assert.match(hung, /^451 4\.3\.0 /);
    assert.ok(Date.now() - started < 10_000);
    const [garbage] = await rcptReplies('garbage', ['alice@example.com']);
    assert.match(garbage, /^451 4\.3\.0 /);
    // What an operator sees: /status JSON and the `smtp-lb status` table.
    const a = lb.node.adminAddress!;
    const status = (await (await fetch(`http://${a.host}:${a.port}/status`)).json()) as NodeStatus;
    const states = Object.fromEntries(status.recipientMaps.map((m) => [m.name, m.state]));
    assert.deepEqual(
      { hung: states.hung, garbage: states.garbage, files: states.files },
      { hung: 'failing', garbage: 'failing', files: 'ok' },
    );
    const table = formatStatus(status);
    assert.match(table, /^RECIPIENT MAP +KIND +STATE +ENTRIES +CACHED +DETAIL$/m);
    assert.match(table, /^hung +ldap +failing +\d+ +no answer within 500 ms$/m);
    assert.match(table, /^files +file +ok +[23] +\d+/m);
  });

  test('unknown: pass lets an unknown recipient through to the backend, which decides', async () => {
    const before = await connects(sales);
    const [r] = await rcptReplies('passing', ['stranger@example.com']);
    assert.match(r, /^250 /, 'the department Postfix accepts anything');
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(await connects(sales), before + 1);
  });

  test('SIGHUP: the map file is re-read, and a map whose settings changed is rebuilt', async () => {
    const file = join(dir.path, 'staff.map');
    await writeFile(file, 'ivan@example.com eng\n');
    await lb.node.reload(configFrom(yaml));
    assert.match((await rcptReplies('file', ['ivan@example.com']))[0], /^250 /);
    // Another file for the same map: a new map, used as soon as the reload returns.
    const other = join(dir.path, 'other.map');
    await writeFile(other, 'judy@example.com sales\n');
    await lb.node.reload(configFrom(yaml.replace(`files: { file: ${file} }`, `files: { file: ${other} }`)));
    assert.match((await rcptReplies('file', ['judy@example.com']))[0], /^250 /);
    assert.match((await rcptReplies('file', ['ivan@example.com']))[0], /^550 5\.1\.1 /);
    await lb.node.reload(configFrom(yaml));
  });

  test('a changed map file is used without a restart (re-read when it changes)', async () => {
    const file = join(dir.path, 'staff.map');
    await writeFile(file, 'carol@example.com eng\nhank@example.com sales\n');
    const deadline = Date.now() + 10_000;
    let r = '';
    while (Date.now() < deadline) {
      [r] = await rcptReplies('file', ['hank@example.com']);
      if (r.startsWith('250')) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.match(r, /^250 /);
  });
});

describe('a dictionary attack', T, () => {
  let backend: CaptureBackend;
  let attacked: TestNode;
  before(async () => {
    backend = await startCaptureBackend();
    const file = join(dir.path, 'few.map');
    await writeFile(file, 'alice@example.com default\n');
    attacked = await startNode(`
node: { id: rcptmaps-attack }
listeners:
  - { name: inbound, listen: 127.0.0.1:0, hostname: mx.example.com, pool: default, recipients: { map: staff } }
pools:
  default: { static: [{ address: ${backend.address} }], tls: none }
recipientMaps:
  staff: { file: ${file} }
shaping:
  tarpit: { rejectedRecipients: 9990, delay: 400ms }
log: { level: warn }
admin: { listen: 127.0.0.1:0 }
`);
  });
  after(async () => {
    await attacked?.stop();
    await backend?.close();
  });

  test('10 000 unknown recipients in one session: 550 5.1.1 each, no backend connection, tarpitted at the end', async (t) => {
    const c = await SmtpDialog.open(attacked.port);
    try {
      await c.read();
      await c.cmd('EHLO attacker.test');
      await c.cmd('MAIL FROM:<spam@attacker.test>');
      const started = Date.now();
      const codes = new Map<string, number>();
      const batch = 500;
      for (let i = 0; i < 9990; i += batch) {
        const n = Math.min(batch, 9990 - i);
        c.write(Array.from({ length: n }, (_, j) => `RCPT TO:<guess${i + j}@example.com>\r\n`).join(''));
        for (let j = 0; j < n; j++) {
          const r = await c.read(30_000);
          const key = `${r.code} ${r.lines[0]!.slice(0, 5)}`;
          codes.set(key, (codes.get(key) ?? 0) + 1);
        }
      }
      const fast = Date.now() - started;
      assert.deepEqual([...codes], [['550 5.1.1', 9990]]);
      assert.equal(
        await metric(attacked, 'smtp_lb_tarpit_sessions_active'),
        1,
        'tarpitted after 9990 rejections',
      );
      const slow: number[] = [];
      for (let i = 9990; i < 10_000; i++) {
        const t0 = Date.now();
        const r = await c.cmd(`RCPT TO:<guess${i}@example.com>`, 10_000);
        slow.push(Date.now() - t0);
        assert.equal(r.code, 550);
      }
      t.diagnostic(`9990 RCPTs in ${fast} ms; the last 10 took ${slow.join(', ')} ms each (tarpit 400 ms)`);
      assert.ok(Math.min(...slow) >= 350, `every reply is held by the tarpit: ${slow}`);
      assert.equal(backend.sessions.length, 0, 'no backend connection for any of them');
      assert.equal(
        await metric(attacked, 'smtp_lb_recipient_lookups_total', '{map="staff",result="unknown"}'),
        10_000,
      );
    } finally {
      c.close();
    }
  });
});

describe('a redis map on the ledger Redis Cluster', T, () => {
  let cluster: RedisCluster;
  let node: TestNode;
  let client: Cluster;
  let backend: CaptureBackend;
  before(async () => {
    [cluster, backend] = await Promise.all([startRedisCluster(), startCaptureBackend()]);
    client = new Cluster(
      cluster.urls.map((u) => ({ host: new URL(u).hostname, port: Number(new URL(u).port) })),
    );
    // Keys of many hash slots, so the lookups of one recipient go to different masters.
    for (let i = 0; i < 20; i++) await client.set(`smtp-lb:rcpt:user${i}@example.com`, 'default');
    await client.set('smtp-lb:rcpt:@catchall.example', 'default');
    node = await startNode(`
node: { id: rcptmaps-cluster }
listeners:
  - { name: inbound, listen: 127.0.0.1:0, hostname: mx.example.com, pool: default, recipients: { map: shared } }
pools:
  default: { static: [{ address: ${backend.address} }], tls: none }
ledger: { redisCluster: [${cluster.urls.join(', ')}] }
recipientMaps:
  shared: { redis: {} }
log: { level: warn }
admin: { listen: 127.0.0.1:0 }
`);
  });
  after(async () => {
    await node?.stop();
    client?.disconnect();
    await backend?.close();
    await cluster?.stop();
  });

  test('keys in every slot are found through the cluster client; others get 550 5.1.1', async () => {
    const c = await SmtpDialog.open(node.port);
    try {
      await c.read();
      await c.cmd('EHLO client.test');
      await c.cmd('MAIL FROM:<someone@partner.test>');
      for (let i = 0; i < 20; i++) assert.equal((await c.cmd(`RCPT TO:<user${i}+x@example.com>`)).code, 250);
      assert.equal((await c.cmd('RCPT TO:<anyone@catchall.example>')).code, 250);
      assert.match((await c.cmd('RCPT TO:<user99@example.com>')).raw, /^550 5\.1\.1 /);
      await c.cmd('QUIT');
    } finally {
      c.close();
    }
  });
});
