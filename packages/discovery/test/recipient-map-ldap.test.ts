// LDAP recipient maps against a real slapd (testkit): the attribute of the entry a filter finds is
// the answer, anonymous and bound, over ldap://, ldaps:// and STARTTLS with the server's CA; slapd
// stopped, a server that never answers and one that answers garbage are errors within the timeout
// (never "unknown"), and a restarted slapd is used again (connections re-opened, re-bound).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { LdapMapConfig } from '@smtp-lb/config';
import { type SlapdServer, startSlapd } from '@smtp-lb/testkit';
import { createRecipientMap, type RecipientMap } from '../src/index.js';

const T = { timeout: 60_000 };

function entries(people: string): string {
  const person = (uid: string, mail: string, dept: string) =>
    `dn: uid=${uid},${people}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\nmail: ${mail}\ndepartmentNumber: ${dept}\n`;
  return [
    person('alice', 'alice@example.com', 'sales'),
    person('bob', 'bob@example.com', 'eng'),
    person('catchall', '@example.org', 'default'),
    `dn: cn=reader,${people}\nobjectClass: person\ncn: reader\nsn: reader\nuserPassword: readerpw\n`,
  ].join('\n');
}

const maps: RecipientMap[] = [];
after(() => Promise.all(maps.map((m) => m.close())));

async function ldapMap(
  ldap: Partial<LdapMapConfig> & { url: string },
  timeout = 2000,
): Promise<RecipientMap> {
  const map = await createRecipientMap({
    name: 'staff',
    ldap: {
      base: 'dc=example,dc=com',
      filter: '(mail=%s)',
      scope: 'sub',
      attribute: 'departmentNumber',
      startTls: false,
      verify: true,
      connections: 2,
      ...ldap,
    },
    cacheTtl: 0,
    negativeCacheTtl: 0,
    cacheSize: 0,
    recipientDelimiter: '+',
    timeout,
  });
  maps.push(map);
  return map;
}

describe('LDAP recipient map on a real slapd', T, () => {
  let plain: SlapdServer;
  let secure: SlapdServer;
  before(async () => {
    [plain, secure] = await Promise.all([startSlapd(), startSlapd({ tls: true, anonymousRead: false })]);
    await Promise.all([plain.add(entries(plain.people)), secure.add(entries(secure.people))]);
  });
  after(() => Promise.all([plain?.stop(), secure?.stop()]));

  test('anonymous: the attribute is the answer; @domain entries; unknown; %u filters', async () => {
    const map = await ldapMap({ url: plain.url });
    assert.deepEqual(await map.lookup('Alice+tag@Example.com'), {
      status: 'found',
      key: 'alice@example.com',
      value: 'sales',
      cached: false,
    });
    assert.deepEqual(await map.lookup('anyone@example.org'), {
      status: 'found',
      key: '@example.org',
      value: 'default',
      cached: false,
    });
    assert.deepEqual(await map.lookup('mallory@example.com'), { status: 'unknown', cached: false });
    // A filter-breaking address is only ever an equality on itself.
    assert.equal((await map.lookup('*)(mail=*@example.com')).status, 'unknown');
    const byUid = await ldapMap({ url: plain.url, filter: '(&(objectClass=inetOrgPerson)(uid=%u))' });
    assert.equal(((await byUid.lookup('bob@anything.example')) as { value: string }).value, 'eng');
    // A filter matching every person still answers with one entry.
    const wide = await ldapMap({ url: plain.url, filter: '(|(mail=%s)(objectClass=inetOrgPerson))' });
    assert.equal((await wide.lookup('nobody@nowhere.example')).status, 'found');
    const exists = await ldapMap({ url: plain.url, attribute: undefined });
    assert.deepEqual(await exists.lookup('bob@example.com'), {
      status: 'found',
      key: 'bob@example.com',
      value: '',
      cached: false,
    });
    assert.match(plain.log(), /filter="\(mail=\\2a\\29\\28mail=\\2a@example.com\)"/i);
  });

  test('lookups that start together on new connections all get their answer (regress: ldapts hung them)', async () => {
    const map = await ldapMap({ url: plain.url });
    const who = ['alice@example.com', 'bob@example.com', 'x@example.org', 'mallory@example.com'];
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => map.lookup(who[i % 4]!)));
    assert.deepEqual(
      answers.slice(0, 4).map((a) => a.status),
      ['found', 'found', 'found', 'unknown'],
    );
    assert.equal(answers.filter((a) => a.status === 'error').length, 0);
    await plain.restart();
    const again = await Promise.all(Array.from({ length: 40 }, (_, i) => map.lookup(who[i % 4]!)));
    assert.equal(
      again.filter((a) => a.status !== 'error').length,
      40,
      JSON.stringify(again.find((a) => a.status === 'error')),
    );
  });

  test('bound over STARTTLS and ldaps:// with the CA; a wrong password or an untrusted CA is an error', async () => {
    const bind = { bindDn: `cn=reader,${secure.people}`, bindPassword: 'readerpw', ca: secure.caFile! };
    const anon = await ldapMap({ url: secure.url });
    // slapd hides even the base from anonymous: that is an error (451), not "unknown" (550).
    assert.equal((await anon.lookup('alice@example.com')).status, 'error');
    const starttls = await ldapMap({ url: secure.url, startTls: true, ...bind });
    assert.equal(((await starttls.lookup('alice@example.com')) as { value: string }).value, 'sales');
    const ldaps = await ldapMap({ url: secure.ldapsUrl!, ...bind });
    assert.equal(((await ldaps.lookup('bob@example.com')) as { value: string }).value, 'eng');
    assert.match(secure.log(), /STARTTLS/);
    assert.match(
      secure.log(),
      /BIND dn="cn=reader,ou=people,dc=example,dc=com" mech=SIMPLE bind_ssf=0 ssf=\d{3}/,
    );

    const wrong = await ldapMap({ url: secure.url, startTls: true, ...bind, bindPassword: 'nope' });
    const r = await wrong.lookup('alice@example.com');
    assert.equal(r.status, 'error');
    assert.match(r.status === 'error' ? r.reason : '', /credentials/i);

    // Without the CA file the self-signed server certificate is not trusted.
    const { ca: _, ...noCa } = bind;
    const untrusted = await ldapMap({ url: secure.ldapsUrl!, ...noCa });
    assert.equal((await untrusted.lookup('alice@example.com')).status, 'error');
  });

  test('slapd stopped: errors within the timeout; restarted: found again on re-opened, re-bound connections', async () => {
    const map = await ldapMap({
      url: secure.url,
      startTls: true,
      bindDn: `cn=reader,${secure.people}`,
      bindPassword: 'readerpw',
      ca: secure.caFile!,
    });
    assert.equal((await map.lookup('alice@example.com')).status, 'found');
    assert.equal((await map.lookup('bob@example.com')).status, 'found');
    await secure.down();
    try {
      for (const who of ['alice@example.com', 'bob@example.com', 'carol@example.com']) {
        const started = Date.now();
        const r = await map.lookup(who);
        assert.equal(r.status, 'error', who);
        assert.ok(Date.now() - started < 5000);
      }
      assert.equal(map.status().state, 'failing');
    } finally {
      await secure.restart();
    }
    assert.equal(((await map.lookup('alice@example.com')) as { value: string }).value, 'sales');
    assert.equal(((await map.lookup('bob@example.com')) as { value: string }).value, 'eng');
    assert.equal(map.status().state, 'ok');
  });
});

describe('LDAP servers that misbehave', T, () => {
  const servers: net.Server[] = [];
  after(() => {
    for (const s of servers) {
      s.close();
    }
  });
  async function server(onSocket: (s: net.Socket) => void): Promise<string> {
    const s = net.createServer(onSocket);
    servers.push(s);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const sockets = new Set<net.Socket>();
    s.on('connection', (c) => {
      sockets.add(c);
      c.on('close', () => sockets.delete(c));
    });
    after(() => {
      for (const c of sockets) c.destroy();
    });
    return `ldap://127.0.0.1:${(s.address() as net.AddressInfo).port}`;
  }

  test('a server that accepts and never answers: an error after the timeout', async () => {
    const url = await server(() => {});
    const map = await ldapMap({ url }, 300);
    const started = Date.now();
    const r = await map.lookup('alice@example.com');
    assert.equal(r.status, 'error');
    assert.match(r.status === 'error' ? r.reason : '', /within 300 ms|timeout|timed out/i);
    assert.ok(Date.now() - started < 3000);
  });

  test('a server that answers garbage, or closes at once: errors, and the process goes on', async () => {
    const garbage = await server((c) => {
      c.on('data', () => {
        c.write(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01]));
        c.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
      });
    });
    const closer = await server((c) => c.destroy());
    for (const url of [garbage, closer]) {
      const map = await ldapMap({ url }, 500);
      for (let i = 0; i < 3; i++) {
        const r = await map.lookup(`user${i}@example.com`);
        assert.equal(r.status, 'error', url);
      }
    }
  });
});
