// A backend that dies at each point of a session: every death is an UpstreamError with the right
// code and stage (so the proxy answers 4xx), never an accepted message and never a crash.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { connectUpstream } from '../src/index.js';
import { backend, body, identity, once, options } from './helpers/setup.js';

const mail = { address: 'a@x.test', params: {} };
const rcpt = (address: string) => ({ address, params: {} });

describe('backend dies', { timeout: 30_000 }, () => {
  it('before the greeting: ECLOSED at greeting', async () => {
    const b = await backend({ kill: 'before-greeting' });
    await assert.rejects(connectUpstream(options(b), identity), { code: 'ECLOSED', stage: 'greeting' });
  });

  it('after answering the RCPT: the envelope stands, DATA fails ECLOSED at data', async () => {
    const b = await backend({ kill: 'after-rcpt' });
    const conn = await connectUpstream(options(b), identity);
    const closed = once(conn, 'close');
    const res = await conn.envelope(mail, [rcpt('b@y.test')]);
    assert.equal(res.rcpts[0]!.code, 250);
    await closed;
    await assert.rejects(conn.data(body('x\r\n'), { bareNewlines: 'normalize' }), {
      code: 'ECLOSED',
      stage: 'data',
    });
  });

  it('after the first of two pipelined RCPTs: ECLOSED at rcpt', async () => {
    const b = await backend({ kill: 'after-rcpt' });
    const conn = await connectUpstream(options(b), identity);
    await assert.rejects(conn.envelope(mail, [rcpt('b@y.test'), rcpt('c@y.test')]), {
      code: 'ECLOSED',
      stage: 'rcpt',
    });
  });

  it('in the middle of the content: ECLOSED at data, the source left alone', async () => {
    const b = await backend({ kill: 'mid-data' });
    const conn = await connectUpstream(options(b), identity);
    await conn.envelope(mail, [rcpt('b@y.test')]);
    const src = new PassThrough();
    src.write('first line\r\n');
    await assert.rejects(conn.data(src, { bareNewlines: 'normalize' }), { code: 'ECLOSED', stage: 'data' });
    assert.equal(src.destroyed, false);
    assert.equal(b.messages.length, 0);
  });

  it('after the final dot, before its reply: ECLOSED at dataDone, so no false acceptance', async () => {
    const b = await backend({ kill: 'after-dot' });
    const conn = await connectUpstream(options(b), identity);
    await conn.envelope(mail, [rcpt('b@y.test')]);
    await assert.rejects(conn.data(body('x\r\n'), { bareNewlines: 'normalize' }), {
      code: 'ECLOSED',
      stage: 'dataDone',
    });
    const [m] = await b.waitForMessages(1);
    assert.equal(m!.reply, undefined, 'the backend never said 250');
  });
});
