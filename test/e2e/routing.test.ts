// Routing by recipient domain across three pools (two static, one from a real Consul agent, in one
// config): a message to mixed recipients, sent by real clients that obey `452 4.5.3` by sending the
// rest in another transaction, reaches every recipient, each at its own pool, exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type CaptureBackend,
  type ConsulAgent,
  type PostfixInstance,
  runSwaks,
  startCaptureBackend,
  startConsul,
  startPostfix,
} from '@smtp-lb/testkit';
import nodemailer from 'nodemailer';
import { startNode, type TestNode } from '../helpers/node.js';

// Exact route (not its subdomains), wildcard route (subdomains only, not the domain itself), case.
const expected = {
  sales: ['ann@sales.example.com', 'Dan@Sales.Example.COM'],
  eng: ['cid@eu.eng.example.com', 'gus@us.eng.example.com'],
  other: ['bob@example.com', 'eve@eng.example.com', 'fay@x.sales.example.com'],
};
// Interleaved, so every pool is interrupted by the others.
const recipients = [
  'ann@sales.example.com',
  'bob@example.com',
  'cid@eu.eng.example.com',
  'Dan@Sales.Example.COM',
  'eve@eng.example.com',
  'fay@x.sales.example.com',
  'gus@us.eng.example.com',
];

let consul: ConsulAgent;
let lb: TestNode;
const pools: Record<keyof typeof expected, CaptureBackend> = {} as never;

before(async () => {
  consul = await startConsul();
  for (const name of Object.keys(expected) as Array<keyof typeof expected>) {
    // MTAs that offer DSN, as Postfix does: the sending Postfix passes ORCPT on, which the node
    // refuses (555 5.5.4) towards a backend without DSN.
    pools[name] = await startCaptureBackend({ dsn: true });
  }
  await consul.register({
    id: 'sales-1',
    name: 'mta-sales',
    address: pools.sales.host,
    port: pools.sales.port,
  });
  lb = await startNode(`
node: { id: routing-e2e }
listeners:
  - { name: inbound, listen: 127.0.0.1:0, hostname: mx.test, pool: other }
pools:
  other:
    static: [{ address: ${pools.other.address} }]
    tls: none
  eng:
    static: [{ address: ${pools.eng.address} }]
    tls: none
  sales:
    consul: { service: mta-sales }
    tls: none
routes:
  - { recipientDomain: sales.example.com, pool: sales }
  - { recipientDomain: '*.eng.example.com', pool: eng }
consul: { address: ${consul.address} }
log: { level: info }
admin: { listen: 127.0.0.1:0 }
`);
  const deadline = Date.now() + 5_000;
  while (!lb.node.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(lb.node.ready, 'the Consul pool never became ready');
});

after(async () => {
  await lb?.stop();
  for (const b of Object.values(pools)) await b.close();
  await consul?.stop();
});

/** Recipients each pool's backend received in messages with this subject, in order of arrival. */
function received(subject: string): Record<keyof typeof expected, string[]> {
  const out = {} as Record<keyof typeof expected, string[]>;
  for (const [name, backend] of Object.entries(pools) as Array<[keyof typeof expected, CaptureBackend]>) {
    out[name] = backend.messages
      .filter((m) => m.data.toString().includes(`Subject: ${subject}\r\n`))
      .flatMap((m) => m.rcptTo);
  }
  return out;
}

function sorted(r: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, [...v].sort()]));
}

describe('routing by recipient domain', { timeout: 60_000 }, () => {
  test('nodemailer: the 452 4.5.3 recipients come back rejected; re-sent, each pool gets exactly its own', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: lb.port, ignoreTLS: true });
    const rounds: Array<{ accepted: string[]; rejected: string[] }> = [];
    let to = recipients;
    while (to.length > 0 && rounds.length < 5) {
      const info = await transport.sendMail({
        envelope: { from: 'alice@example.org', to },
        from: 'alice@example.org',
        to: recipients,
        subject: 'nodemailer routing',
        text: 'one message, three pools\n',
      });
      // nodemailer lower-cases the domain it sends (Dan@sales.example.com); compare as given.
      const accepted = info.accepted.map(asGiven);
      const rejected = info.rejected.map(asGiven);
      rounds.push({ accepted, rejected });
      for (const err of (info as { rejectedErrors?: Array<{ response?: string }> }).rejectedErrors ?? []) {
        assert.match(err.response ?? '', /^452 4\.5\.3 /);
      }
      to = rejected;
    }
    // The first recipient of each try binds its pool; the others wait for the next try.
    assert.deepEqual(rounds, [
      { accepted: expected.sales, rejected: [...expected.other, ...expected.eng].sort(byPosition) },
      { accepted: expected.other, rejected: expected.eng },
      { accepted: expected.eng, rejected: [] },
    ]);
    const got = received('nodemailer routing');
    assert.deepEqual(got.sales, ['ann@sales.example.com', 'Dan@sales.example.com']);
    assert.deepEqual({ ...got, sales: got.sales.map(asGiven) }, expected);
    transport.close();
  });

  describe('Postfix as the sending MTA (its relay is the node)', () => {
    const running: PostfixInstance[] = [];
    after(async () => {
      for (const p of running) await p.stop();
    });

    /** Submits one message to every recipient through a fresh Postfix; waits until all arrived. */
    async function viaPostfix(subject: string, mainCf: Record<string, string> = {}): Promise<string> {
      const postfix = await startPostfix({ relayTo: `127.0.0.1:${lb.port}`, mainCf });
      running.push(postfix);
      const res = await runSwaks({
        server: postfix.address,
        from: 'alice@example.org',
        to: recipients,
        data: `Subject: ${subject}\r\nFrom: alice@example.org\r\n\r\none message, three pools\r\n`,
        timeoutMs: 20_000,
      });
      assert.equal(res.code, 0, res.stdout + res.stderr);
      const deadline = Date.now() + 30_000;
      const count = () => Object.values(received(subject)).flat().length;
      // Deferred recipients wait for the next queue run. Its timers are short here, but a loaded
      // machine has been seen to leave a deferred file alone for 30 s ("skipped, still being
      // delivered"): ask for the queue run (postqueue -f) rather than wait on the timers.
      for (let i = 1; count() < recipients.length && Date.now() < deadline; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if (i % 20 === 0) await postfix.flush();
      }
      const log = await postfix.log();
      assert.deepEqual(sorted(received(subject)), sorted(expected), log);
      return log;
    }

    test('default recipient limit: the 452 4.5.3 recipients are deferred and sent at the next queue run, each to its pool', async (t) => {
      const log = await viaPostfix('postfix defaults');
      // Postfix defers a recipient refused with 4xx; with the default queue timers that is minutes.
      const deferred = log.match(
        /status=deferred \(host [^)]* said: 452 4\.5\.3 Recipient belongs to another route/g,
      );
      assert.ok(deferred && deferred.length >= 3, log);
      const runs = log.match(/qmgr\[\d+\]: \w+: from=<alice@example\.org>.*nrcpt=7/g) ?? [];
      t.diagnostic(`${deferred.length} recipient deferrals over ${runs.length} deliveries of the queue file`);
    });

    test('one recipient per delivery (relay_destination_recipient_limit = 1): no 452, all sent at once', async () => {
      const log = await viaPostfix('postfix one by one', {
        relay_destination_recipient_limit: '1',
        smtp_destination_recipient_limit: '1',
      });
      assert.doesNotMatch(log, /status=deferred/);
      assert.equal(log.match(/status=sent/g)?.length, recipients.length, log);
    });
  });
});

function asGiven(address: unknown): string {
  return recipients.find((r) => r.toLowerCase() === String(address).toLowerCase()) ?? String(address);
}

function byPosition(a: string, b: string): number {
  return recipients.indexOf(a) - recipients.indexOf(b);
}
