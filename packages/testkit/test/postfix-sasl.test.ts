// A private Postfix with SASL through a private Dovecot (the backend of `verify: backend`): AUTH
// PLAIN and LOGIN from swaks, a wrong password refused with 535, and the log line with
// sasl_username that the proxy's end-to-end tests look for.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type PostfixInstance, runSwaks, startPostfix } from '../src/index.js';

describe('startPostfix with saslUsers', { timeout: 60_000 }, () => {
  let pf: PostfixInstance | undefined;
  after(() => pf?.stop());

  test('authenticates through Dovecot and logs sasl_username', async () => {
    pf = await startPostfix({ saslUsers: { 'alice@example.com': 's3cret' } });
    for (const mech of ['PLAIN', 'LOGIN']) {
      const ok = await runSwaks({
        server: pf.address,
        from: 'alice@example.com',
        to: 'bob@example.net',
        extraArgs: ['--auth', mech, '--auth-user', 'alice@example.com', '--auth-password', 's3cret'],
      });
      assert.equal(ok.code, 0, ok.stdout);
      assert.match(ok.stdout, /^<[-~] +235 2\.7\.0/m, mech);
    }
    await pf.waitForLog(
      /client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=alice@example\.com/,
    );
    const bad = await runSwaks({
      server: pf.address,
      from: 'alice@example.com',
      to: 'bob@example.net',
      extraArgs: ['--auth', 'PLAIN', '--auth-user', 'alice@example.com', '--auth-password', 'wrong'],
    });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout, /535 5\.7\.8/);
  });
});
