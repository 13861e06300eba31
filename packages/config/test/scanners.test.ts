// `scanners:` and a listener's `scan:`: units and defaults, a name or a list, and every mistake
// reported at its own path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configOf, errorAt, errorsOf } from './helpers.js';

const T = { timeout: 5_000 };

function file(scanners: string, scan: string): string {
  return `listeners:
  - name: smtp
    listen: 127.0.0.1:2525
${scan}pools:
  default:
    static:
      - address: 127.0.0.1:25
scanners:
${scanners}`;
}

test('scanners resolve with their defaults; scan takes a name or a list', T, () => {
  const c = configOf(
    file(
      `  spam: { rspamd: { url: http://127.0.0.1:11333 } }
  milt: { milter: { address: 127.0.0.1:11332 }, timeout: 2s, onError: defer, maxSize: 5MB }
`,
      '    scan: [spam, milt, spam]\n',
    ),
  );
  assert.deepEqual(c.scanners.spam, {
    name: 'spam',
    rspamd: { url: 'http://127.0.0.1:11333' },
    timeout: 10_000,
    onError: 'accept',
    maxSize: 20_000_000,
  });
  assert.deepEqual(c.scanners.milt, {
    name: 'milt',
    milter: { address: { host: '127.0.0.1', port: 11332 } },
    timeout: 2000,
    onError: 'defer',
    maxSize: 5_000_000,
  });
  assert.deepEqual(c.listeners[0]?.scan, ['spam', 'milt']);
  const one = configOf(file('  spam: { rspamd: { url: http://127.0.0.1:11333 } }\n', '    scan: spam\n'));
  assert.deepEqual(one.listeners[0]?.scan, ['spam']);
});

test('an unknown scanner, both drivers, no driver and bad values are errors at their path', T, () => {
  const errors = errorsOf(
    file(
      `  both: { rspamd: { url: http://a:1 }, milter: { address: 127.0.0.1:1 } }
  none: { timeout: 1s }
  bad: { rspamd: { url: ftp://x }, onError: shrug, timeout: soon }
`,
      '    scan: [both, nope]\n',
    ),
  );
  assert.match(errorAt(errors, 'listeners[0].scan[1]').message, /unknown scanner "nope"/);
  assert.match(errorAt(errors, 'scanners.both').message, /either rspamd or milter/);
  assert.match(errorAt(errors, 'scanners.none').message, /needs rspamd or milter/);
  assert.ok(errorAt(errors, 'scanners.bad.rspamd.url'));
  assert.match(errorAt(errors, 'scanners.bad.onError').message, /accept, defer, reject/);
  assert.ok(errorAt(errors, 'scanners.bad.timeout'));
});
