// A real slapd: entries added by ldapadd are found by ldapsearch, anonymously or only after a bind,
// over ldaps:// and STARTTLS with the certificate it hands out; down() and restart() keep the data.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { runCommand, type SlapdServer, startSlapd } from '../src/index.js';

const ALICE = (people: string) => `dn: uid=alice,${people}
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
mail: alice@example.com
departmentNumber: sales
userPassword: alicepw
`;

async function search(
  url: string,
  base: string,
  filter: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string }> {
  const r = await runCommand(
    'ldapsearch',
    ['-x', '-LLL', '-H', url, '-b', base, ...extra, filter, 'departmentNumber'],
    {
      timeoutMs: 10_000,
      env,
    },
  );
  return { code: r.code, out: r.stdout + r.stderr };
}

describe('startSlapd', { timeout: 60_000 }, () => {
  const servers: SlapdServer[] = [];
  after(() => Promise.all(servers.map((s) => s.stop())));

  test('entries added are found; down() refuses connections and restart() keeps the data', async () => {
    const ldap = await startSlapd();
    servers.push(ldap);
    await ldap.add(ALICE(ldap.people));
    const found = await search(ldap.url, ldap.suffix, '(mail=alice@example.com)');
    assert.equal(found.code, 0, found.out);
    assert.match(found.out, /departmentNumber: sales/);
    assert.match(ldap.log(), /SRCH base="dc=example,dc=com"/);
    await ldap.down();
    assert.notEqual((await search(ldap.url, ldap.suffix, '(mail=alice@example.com)')).code, 0);
    await ldap.restart();
    assert.match((await search(ldap.url, ldap.suffix, '(mail=alice@example.com)')).out, /sales/);
  });

  test('anonymousRead: false hides entries until a bind; TLS on ldaps:// and by STARTTLS', async () => {
    const ldap = await startSlapd({ tls: true, anonymousRead: false });
    servers.push(ldap);
    await ldap.add(ALICE(ldap.people));
    assert.ok(ldap.ldapsUrl && ldap.caFile && ldap.ca?.includes('BEGIN CERTIFICATE'));
    const anon = await search(ldap.url, ldap.suffix, '(mail=alice@example.com)');
    assert.doesNotMatch(anon.out, /sales/);
    const bound = ['-D', `uid=alice,${ldap.people}`, '-w', 'alicepw'];
    assert.match((await search(ldap.url, ldap.suffix, '(mail=alice@example.com)', bound)).out, /sales/);
    const env = { LDAPTLS_CACERT: ldap.caFile, LDAPTLS_REQCERT: 'demand' };
    const ldaps = await search(ldap.ldapsUrl, ldap.suffix, '(mail=alice@example.com)', bound, env);
    assert.match(ldaps.out, /sales/);
    const starttls = await search(ldap.url, ldap.suffix, '(mail=alice@example.com)', [...bound, '-ZZ'], env);
    assert.match(starttls.out, /sales/);
    assert.match(ldap.log(), /STARTTLS/);
  });
});
