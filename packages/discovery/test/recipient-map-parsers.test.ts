// Property tests (fast-check, fixed seeds, bounded runs) for the recipient-map parsers: map files
// written any legal way parse back to their entries, and arbitrary text never throws; lookup keys
// follow Postfix's order; an LDAP filter expanded from any key parses (ldapts' own parser) to an
// equality on exactly that key, so no address can widen or break the search.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EqualityFilter, FilterParser } from 'ldapts';
import { escapeFilterValue, expandFilter, lookupKeys, parseMapFile } from '../src/index.js';

const T = { timeout: 30_000 };
const RUNS = { seed: 18, numRuns: 400, interruptAfterTimeLimit: 10_000 } as const;

const token = fc.stringMatching(/^[A-Za-z0-9._+@=-]{1,20}$/).filter((s) => !s.startsWith('#'));
const blanks = fc.stringMatching(/^[ \t]{1,3}$/);

test(
  'a map file written with comments, blank lines, CRLF, tabs and continuations parses to its entries',
  T,
  () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(token, fc.array(token, { minLength: 1, maxLength: 3 })), {
          selector: ([k]) => k.toLowerCase(),
          maxLength: 30,
        }),
        fc.array(fc.constantFrom('comment', 'blank', 'crlf', 'continue', 'indented-comment'), {
          maxLength: 60,
        }),
        blanks,
        (entries, noise, sep) => {
          let i = 0;
          const pick = () => noise[i++ % Math.max(noise.length, 1)];
          let text = '';
          for (const [key, words] of entries) {
            const n = pick();
            if (n === 'comment') text += '# a comment line\n';
            if (n === 'blank') text += ' \t\n';
            if (n === 'indented-comment') text += '   # indented comment\n';
            const eol = n === 'crlf' ? '\r\n' : '\n';
            if (n === 'continue' && words.length > 1) {
              text += `${key}${sep}${words[0]}${eol}${sep}${words.slice(1).join(' ')}${eol}`;
            } else {
              text += `${key}${sep}${words.join(' ')}${eol}`;
            }
          }
          const parsed = parseMapFile(text);
          assert.deepEqual(parsed.problems, []);
          assert.deepEqual(
            [...parsed.entries],
            entries.map(([k, words]) => [k.toLowerCase(), words.join(' ')]),
          );
        },
      ),
      RUNS,
    );
  },
);

test('any text parses without throwing; keys are lower case without blanks, values trimmed', T, () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (text) => {
      const { entries, problems } = parseMapFile(text);
      for (const [k, v] of entries) {
        assert.equal(k, k.toLowerCase());
        assert.doesNotMatch(k, /\s/);
        assert.ok(k !== '' && v !== '' && v === v.trim());
      }
      for (const p of problems) assert.ok(p.line >= 1 && p.message !== '');
    }),
    RUNS,
  );
});

test('bad lines are reported by line and skipped; the first of two equal keys wins', T, () => {
  const { entries, problems } = parseMapFile(
    'alice@example.com sales\nbob@example.com\n  continued\nALICE@example.com eng\n\tstray\nnovalue\n',
  );
  assert.deepEqual(
    [...entries],
    [
      ['alice@example.com', 'sales'],
      ['bob@example.com', 'continued'],
    ],
  );
  assert.deepEqual(problems, [
    { line: 4, message: 'duplicate key "alice@example.com" ignored' },
    { line: 6, message: 'expected "key value", got "novalue"' },
  ]);
  assert.deepEqual(parseMapFile('  leading\n').problems, [
    { line: 1, message: 'continuation line without a line before it' },
  ]);
});

const local = fc.stringMatching(/^[a-z0-9._+-]{1,16}$/);
const domain = fc.stringMatching(/^[a-z0-9-]{1,10}(\.[a-z]{2,5}){1,2}$/);

test('lookup keys: the address, then without its extension, then @domain; all lower case', T, () => {
  fc.assert(
    fc.property(local, domain, fc.boolean(), (l, d, upper) => {
      const address = upper ? `${l}@${d}`.toUpperCase() : `${l}@${d}`;
      const keys = lookupKeys(address, '+');
      const a = `${l}@${d}`;
      assert.equal(keys[0], a);
      assert.equal(keys.at(-1), `@${d}`);
      const plus = l.indexOf('+', 1);
      if (plus > 0) assert.deepEqual(keys, [a, `${l.slice(0, plus)}@${d}`, `@${d}`]);
      else assert.deepEqual(keys, [a, `@${d}`]);
      assert.deepEqual(lookupKeys(address, ''), [a, `@${d}`]);
    }),
    RUNS,
  );
  assert.deepEqual(lookupKeys('Alice+Tag-x@Example.COM', '+-'), [
    'alice+tag-x@example.com',
    'alice@example.com',
    '@example.com',
  ]);
  assert.deepEqual(lookupKeys('+tag@example.com', '+'), ['+tag@example.com', '@example.com']);
  assert.deepEqual(lookupKeys('postmaster', '+'), ['postmaster']);
  assert.deepEqual(lookupKeys('', '+'), []);
});

const noAt = (maxLength: number) => fc.string({ maxLength }).filter((s) => !s.includes('@'));

test('an expanded LDAP filter is an equality on exactly the key, whatever the key holds', T, () => {
  fc.assert(
    fc.property(noAt(40), noAt(20), (l, d) => {
      const key = `${l}@${d}`;
      for (const [template, expected] of [
        ['(mail=%s)', key],
        ['(uid=%u)', l],
        ['(associatedDomain=%d)', d],
      ] as const) {
        const filter = expandFilter(template, key);
        if (expected === '') {
          assert.equal(filter, undefined, template);
          continue;
        }
        assert.ok(filter !== undefined);
        const parsed = FilterParser.parseString(filter);
        assert.ok(parsed instanceof EqualityFilter, filter);
        assert.equal(String(parsed.value), expected);
      }
    }),
    RUNS,
  );
});

test(
  'filter escaping covers RFC 4515 specials; %% is a percent; %u/%d without a part skip the search',
  T,
  () => {
    assert.equal(escapeFilterValue('a*(b)\\c\0'), 'a\\2a\\28b\\29\\5cc\\00');
    assert.equal(expandFilter('(&(mail=%s)(x=100%%))', '*@x'), '(&(mail=\\2a@x)(x=100%))');
    assert.equal(expandFilter('(uid=%u)', '@example.com'), undefined);
    assert.equal(expandFilter('(dc=%d)', 'postmaster'), undefined);
    assert.equal(expandFilter('(|(mail=%s)(mail=%u@%d))', 'a@b'), '(|(mail=a@b)(mail=a@b))');
  },
);
