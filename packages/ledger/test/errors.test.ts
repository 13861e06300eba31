import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkReply, LedgerError, ReplyCode, scriptError } from '../src/errors.js';

describe('script reply codes', () => {
  it('passes success codes through', () => {
    assert.deepEqual(checkReply('acquire', [ReplyCode.ok, 3, 1]), [1, 3, 1]);
    assert.deepEqual(checkReply('acquire', [ReplyCode.full, 20, 1]), [2, 20, 1]);
  });

  it('maps every error code to a typed error with a stable code', () => {
    const cases: Array<[number, string]> = [
      [ReplyCode.badArgument, 'LEDGER_BAD_ARGUMENT'],
      [ReplyCode.wrongType, 'LEDGER_WRONG_TYPE'],
      [-99, 'LEDGER_UNKNOWN_REPLY'],
      [7, 'LEDGER_UNKNOWN_REPLY'],
    ];
    for (const [code, expected] of cases) {
      const e = scriptError('release', code);
      assert.ok(e instanceof LedgerError);
      assert.equal(e.code, expected);
      assert.equal(e.command, 'release');
      assert.throws(
        () => checkReply('release', [code, 0]),
        (t: unknown) => (t as LedgerError).code === expected,
      );
    }
  });

  it('treats a reply that is not an array of integers as unknown', () => {
    for (const reply of [null, 'OK', [], ['1', 2], 5]) {
      assert.throws(
        () => checkReply('heartbeat', reply),
        (e: unknown) => e instanceof LedgerError && e.code === 'LEDGER_UNKNOWN_REPLY',
      );
    }
  });
});
