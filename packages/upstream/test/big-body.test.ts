// Invariant 5 (bounded memory): a 150 MB body streams to the backend with backpressure; the process
// RSS stays within a bound far below the message size, and the backend gets every byte. The size is
// well above V8's 64 MiB external-memory lag (socket Buffers are freed only once external memory has
// grown that much), so a copy of the message (+150 MiB) is told from collection lag.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { connectUpstream } from '../src/index.js';
import { backend, identity, options } from './helpers/setup.js';

const TOTAL = 150 * 1024 * 1024;
const MB = 1024 * 1024;

/**
 * 150 MB of CRLF lines served from one prebuilt 1 MB template, cut at an odd size so lines straddle
 * chunk boundaries; every 7th line starts with a dot (stuffed on the wire). Reusing the template keeps
 * the generator itself from allocating, so the RSS measured is the client's and the backend's.
 */
function generated(seen: { hash: ReturnType<typeof createHash>; bytes: number }): Readable {
  const lines: string[] = [];
  for (let n = 0, size = 0; size < MB; n++) {
    const line = `${n % 7 === 0 ? '.' : ''}line ${n} ${'x'.repeat(n % 90)}\r\n`;
    lines.push(line);
    size += line.length;
  }
  const template = Buffer.from(lines.join(''), 'latin1');
  const CUT = 65_521;
  let offset = 0;
  return new Readable({
    highWaterMark: 64 * 1024,
    read() {
      if (seen.bytes >= TOTAL && offset === 0) {
        this.push(null);
        return;
      }
      const chunk = template.subarray(offset, offset + CUT);
      offset = offset + CUT >= template.length ? 0 : offset + CUT;
      seen.bytes += chunk.length;
      seen.hash.update(chunk);
      this.push(chunk);
    },
  });
}

describe('a 150 MB message', { timeout: 120_000 }, () => {
  it('streams with flat memory and arrives intact', async () => {
    const b = await backend({ keepData: false, size: 200 * MB });
    const conn = await connectUpstream(options(b), identity);
    await conn.envelope({ address: 'a@x.test', params: {} }, [{ address: 'b@y.test', params: {} }]);
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const seen = { hash: createHash('sha256'), bytes: 0 };
    try {
      const reply = await conn.data(generated(seen), { bareNewlines: 'reject', maxBytes: 160 * MB });
      assert.equal(reply.code, 250);
    } finally {
      clearInterval(sampler);
    }
    await conn.quit();
    const [m] = await b.waitForMessages(1);
    assert.ok(seen.bytes >= TOTAL);
    assert.equal(m!.size, seen.bytes);
    assert.equal(m!.sha256, seen.hash.digest('hex'));
    const growth = (peak - base) / MB;
    console.log(`# rss growth while streaming 150 MB: ${growth.toFixed(1)} MB`);
    assert.ok(growth < 100, `RSS grew by ${growth.toFixed(1)} MB`);
  });
});
