// The shared part of recipient maps (cache with TTLs, lookup order, one lookup in flight per
// address, timeout, failures never cached) over a counting driver, and the file driver on a real
// file: read at open, re-read on reload() and when the file is replaced, a broken or missing file.
import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { makeTempDir, pollUntil } from '@smtp-lb/testkit';
import {
  createRecipientMap,
  type LookupOutcome,
  type MapDriver,
  type MapHit,
  RecipientMap,
} from '../src/index.js';

const T = { timeout: 20_000 };

class CountingDriver implements MapDriver {
  readonly kind = 'file' as const;
  asked: string[][] = [];
  fail: string | undefined;
  hang = false;
  constructor(readonly entries: Record<string, string>) {}
  async lookup(keys: readonly string[], signal: AbortSignal): Promise<MapHit | undefined> {
    this.asked.push([...keys]);
    if (this.hang) {
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    }
    await delay(5);
    if (this.fail) throw new Error(this.fail);
    for (const key of keys) if (this.entries[key] !== undefined) return { key, value: this.entries[key]! };
    return undefined;
  }
  state() {
    return { up: true };
  }
  async close() {}
}

function mapOver(driver: MapDriver, clock: { now: number }, outcomes: LookupOutcome[] = []) {
  return new RecipientMap({
    name: 'staff',
    driver,
    cacheTtlMs: 60_000,
    negativeCacheTtlMs: 10_000,
    cacheSize: 3,
    recipientDelimiter: '+',
    timeoutMs: 200,
    now: () => clock.now,
    onLookup: (o) => outcomes.push(o),
  });
}

test('answers in lookup order, cached per TTL (unknown shorter), failures never cached', T, async () => {
  const driver = new CountingDriver({ 'alice@example.com': 'sales', '@other.example': 'default' });
  const clock = { now: 0 };
  const outcomes: LookupOutcome[] = [];
  const map = mapOver(driver, clock, outcomes);
  assert.deepEqual(await map.lookup('Alice+news@Example.com'), {
    status: 'found',
    key: 'alice@example.com',
    value: 'sales',
    cached: false,
  });
  assert.deepEqual(driver.asked[0], ['alice+news@example.com', 'alice@example.com', '@example.com']);
  assert.equal((await map.lookup('alice+news@example.com')).status, 'found');
  assert.equal(driver.asked.length, 1, 'the second lookup came from the cache');
  assert.deepEqual(await map.lookup('zed@other.example'), {
    status: 'found',
    key: '@other.example',
    value: 'default',
    cached: false,
  });
  assert.deepEqual(await map.lookup('nobody@example.com'), { status: 'unknown', cached: false });
  assert.deepEqual(await map.lookup('nobody@example.com'), { status: 'unknown', cached: true });
  clock.now = 10_001;
  assert.deepEqual(await map.lookup('nobody@example.com'), { status: 'unknown', cached: false });
  assert.equal((await map.lookup('zed@other.example')).status, 'found');
  assert.equal(driver.asked.length, 4, 'found answers outlive unknown ones');

  driver.fail = 'connection refused';
  const failed = await map.lookup('new@example.com');
  assert.deepEqual(failed, { status: 'error', reason: 'connection refused' });
  assert.equal(map.status().state, 'failing');
  driver.fail = undefined;
  assert.equal((await map.lookup('new@example.com')).status, 'unknown', 'the failure was not cached');
  assert.equal(map.status().state, 'ok');
  assert.ok(map.status().lastError);
  assert.deepEqual(outcomes, [
    'found',
    'cache_found',
    'found',
    'unknown',
    'cache_unknown',
    'unknown',
    'cache_found',
    'error',
    'unknown',
  ]);
  assert.ok(map.status().cached <= 3, 'the cache keeps to cacheSize');
});

test(
  'concurrent lookups of one address ask the source once; a slow source times out as an error',
  T,
  async () => {
    const driver = new CountingDriver({ 'bob@example.com': 'eng' });
    const map = mapOver(driver, { now: 0 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => map.lookup('bob@example.com')));
    assert.equal(driver.asked.length, 1);
    assert.ok(answers.every((a) => a.status === 'found' && a.value === 'eng'));
    driver.hang = true;
    const started = Date.now();
    const r = await map.lookup('slow@example.com');
    assert.deepEqual(r, { status: 'error', reason: 'no answer within 200 ms' });
    assert.ok(Date.now() - started < 2000);
    driver.hang = false;
    assert.equal((await map.lookup('slow@example.com')).status, 'unknown');
  },
);

test(
  'file map: read at open, re-read when replaced and on reload(); a broken file keeps the last table',
  T,
  async () => {
    const dir = await makeTempDir('rcptmap');
    after(() => dir.remove());
    const path = join(dir.path, 'staff.map');
    await writeFile(path, '# staff\nalice@example.com sales\n@example.com default\nbroken-line\n');
    const warnings: object[] = [];
    const logger = {
      info() {},
      warn: (o: object) => warnings.push(o),
      error: (o: object) => warnings.push(o),
    };
    const map = await createRecipientMap(
      {
        name: 'staff',
        file: path,
        cacheTtl: 60_000,
        negativeCacheTtl: 60_000,
        cacheSize: 100,
        recipientDelimiter: '+',
        timeout: 1000,
      },
      { logger, watchIntervalMs: 50 },
    );
    after(() => map.close());
    assert.deepEqual(await map.lookup('alice@example.com'), {
      status: 'found',
      key: 'alice@example.com',
      value: 'sales',
      cached: false,
    });
    assert.equal((await map.lookup('carol@example.com')).status, 'found');
    assert.equal((await map.lookup('x@elsewhere.example')).status, 'unknown');
    assert.deepEqual(warnings, [{ path, line: 4, problem: 'expected "key value", got "broken-line"' }]);
    assert.deepEqual(
      { state: map.status().state, entries: map.status().entries, kind: map.kind },
      { state: 'ok', entries: 2, kind: 'file' },
    );

    // Replaced by rename, as editors and config managers do: the change is seen, the cache forgotten.
    await writeFile(`${path}.new`, 'alice@example.com eng\nx@elsewhere.example default\n');
    await rename(`${path}.new`, path);
    await pollUntil('the replaced file is read', async () =>
      (await map.lookup('alice@example.com')).status === 'found' &&
      (await map.lookup('alice@example.com')).status === 'found' &&
      ((await map.lookup('alice@example.com')) as { value: string }).value === 'eng'
        ? true
        : undefined,
    );
    assert.equal((await map.lookup('x@elsewhere.example')).status, 'found');
    assert.equal((await map.lookup('carol@example.com')).status, 'unknown');

    // Gone: the last table stays and the status says so; reload() after it is back reads it.
    await rm(path);
    await map.reload();
    assert.equal((await map.lookup('alice@example.com')).status, 'found');
    assert.match(map.status().detail ?? '', /serving the last good read; cannot read .*ENOENT/);
    await writeFile(path, 'dave@example.com sales\n');
    await map.reload();
    assert.equal((await map.lookup('dave@example.com')).status, 'found');
    assert.equal((await map.lookup('alice@example.com')).status, 'unknown');
  },
);

test('a file map whose file was never readable fails every lookup (an error, not "unknown")', T, async () => {
  const dir = await makeTempDir('rcptmap');
  after(() => dir.remove());
  const path = join(dir.path, 'missing.map');
  const map = await createRecipientMap(
    {
      name: 'gone',
      file: path,
      cacheTtl: 0,
      negativeCacheTtl: 0,
      cacheSize: 0,
      recipientDelimiter: '',
      timeout: 1000,
    },
    { watchIntervalMs: 50 },
  );
  after(() => map.close());
  const r = await map.lookup('alice@example.com');
  assert.equal(r.status, 'error');
  assert.match(r.status === 'error' ? r.reason : '', /not read: cannot read .*ENOENT/);
  assert.equal(map.status().state, 'failing');
  await writeFile(path, 'alice@example.com sales\n');
  await pollUntil('the new file is read', async () =>
    (await map.lookup('alice@example.com')).status === 'found' ? true : undefined,
  );
});
