// The catalogue of the replies smtp-lb makes itself (src/replies.ts) and the README's table of them
// are one list: an entry added, renamed or given another code on one side only fails here.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Reply } from '@smtp-lb/upstream';
import { type ReplyName, replies, wireReply } from '../src/replies.js';

const ROOT = new URL('../../../../', import.meta.url).pathname;
const README = join(ROOT, 'README.md');

/** name -> the codes its row gives (`421 4.7.0`, or `220` for a reply without an enhanced code). */
function readmeTable(): Map<string, string[]> {
  const text = readFileSync(README, 'utf8');
  const start = text.indexOf('### Replies smtp-lb makes itself');
  assert.ok(start >= 0, 'the README has a section "Replies smtp-lb makes itself"');
  const end = text.indexOf('\n#', start + 4);
  const rows = new Map<string, string[]>();
  for (const line of text.slice(start, end < 0 ? undefined : end).split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !/^`\d{3}/.test(cells[1]!)) continue;
    const name = /^`(\w+)`$/.exec(cells[2]!)?.[1];
    assert.ok(name, `a name in backticks in: ${line}`);
    assert.ok(!rows.has(name), `${name} has one row`);
    rows.set(
      name,
      [...cells[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!),
    );
  }
  return rows;
}

/** Every entry with arguments of the right kinds. */
function sample(name: ReplyName): Reply {
  const make = replies[name] as (...args: unknown[]) => Reply;
  switch (name) {
    case 'tooBig':
    case 'commandTimeout':
    case 'dataTooSlow':
      return make(1000);
    case 'policyRefused':
      return make(554, '5.7.1', '<a@b.test>: Recipient address rejected', 'Access denied');
    case 'hello':
      return make('mx.test', '127.0.0.1', ['PIPELINING']);
    default:
      return make('mx.test');
  }
}

function codeOf(r: Reply): string {
  return r.enhanced ? `${r.code} ${r.enhanced}` : String(r.code);
}

test('the README table and the catalogue list the same replies, with the same codes', () => {
  const table = readmeTable();
  const names = Object.keys(replies) as ReplyName[];
  for (const name of names) {
    const codes = table.get(name);
    assert.ok(codes, `replies.${name} has a row in the README table`);
    assert.ok(
      codes.includes(codeOf(sample(name))),
      `${name}: README says ${codes}, code says ${codeOf(sample(name))}`,
    );
  }
  for (const name of table.keys()) assert.ok(name in replies, `README row ${name} is in the catalogue`);
});

test('every entry is a well-formed reply: a 2xx-5xx code, an enhanced code of the same class first', () => {
  for (const name of Object.keys(replies) as ReplyName[]) {
    const r = sample(name);
    assert.ok(r.code >= 200 && r.code < 600, name);
    assert.ok(r.lines.length >= 1 && r.lines.every((l) => !/[\r\n]/.test(l)), name);
    if (r.enhanced) {
      assert.equal(r.enhanced[0], String(r.code)[0], `${name}: the enhanced code's class`);
      assert.ok(r.lines[0]!.startsWith(`${r.enhanced} `), `${name}: its text starts with the enhanced code`);
    }
    assert.match(wireReply(r), /^\d{3}[ -].*\r\n$/s);
  }
});

test('wireReply: multi-line replies keep every line', () => {
  assert.equal(wireReply({ code: 250, lines: ['a', 'b', 'c'] }), '250-a\r\n250-b\r\n250 c\r\n');
  assert.equal(wireReply({ code: 554, lines: ['5.7.1 no'] }), '554 5.7.1 no\r\n');
});

/** The sources of every test in the repository (packages' test/ folders and test/). */
function testSources(): string {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && e.name !== 'replies.test.ts') out.push(readFileSync(p, 'utf8'));
    }
  };
  walk(join(ROOT, 'test'));
  for (const pkg of readdirSync(join(ROOT, 'packages'))) {
    try {
      walk(join(ROOT, 'packages', pkg, 'test'));
    } catch {
      // a package without tests
    }
  }
  return out.join('\n');
}

/**
 * Entries whose tests still recognise them by code and text (regular expressions) rather than by
 * name. The list may only shrink: a new entry needs a test that makes it happen and compares the
 * client's reply with `replies.<name>(...)`.
 */
const BY_CODE_ONLY = new Set<string>([
  'unknownRecipient',
  'recipientLookupFailed',
  'authChallenge',
  'authzidRefused',
  'authUnavailable',
  'authRequired',
  'authNeedsTls',
  'authCancelled',
  'authMalformed',
  'authMechanism',
  'authTwice',
  'authInTransaction',
  'authTooManyFailures',
  'userSessions',
  'senderNotOwned',
  'senderOverLimit',
  'senderSuspended',
  'nullMx',
  'noSuchDomain',
  'noMailHost',
  'dnsFailure',
  'noOriginalDestination',
  'destinationDenied',
  'tooManySessions',
  'tooManyFromNetwork',
  'tarpitFull',
  'notAClient',
  'dnsbl',
  'commandTimeout',
  'dataTooSlow',
  'internalError',
  'hostLockedOut',
  'hostOverLimit',
]);

test('every entry has a test that makes it happen and names it (or is listed as still tested by code)', () => {
  const sources = testSources();
  const named = (name: string) => new RegExp(`replies\\.${name}\\b`).test(sources);
  const missing = (Object.keys(replies) as ReplyName[]).filter((n) => !named(n) && !BY_CODE_ONLY.has(n));
  assert.deepEqual(missing, [], 'entries without a test that names them');
  const stale = [...BY_CODE_ONLY].filter((n) => named(n) || !(n in replies));
  assert.deepEqual(stale, [], 'tested by name now (or gone): take them off BY_CODE_ONLY');
});
