import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPolicy, policyNames, UnknownPolicyError } from '../src/create-policy.js';

describe('createPolicy', () => {
  it('builds every configured policy under its own name', () => {
    for (const name of policyNames) {
      const p = createPolicy(name);
      assert.equal(p.name, name);
      assert.equal(p.pick([{ id: 'x', weight: 1, count: 0 }])?.id, 'x');
    }
  });

  it('refuses an unknown name with a stable code', () => {
    assert.throws(
      () => createPolicy('round-robin' as never),
      (err: unknown) =>
        err instanceof UnknownPolicyError &&
        err.code === 'BALANCER_UNKNOWN_POLICY' &&
        /round-robin/.test(err.message),
    );
  });
});
