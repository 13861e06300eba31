// Against Postfix's smtp-sink, the benchmark sink: it offers `XCLIENT NAME HELO` and answers an
// accepted XCLIENT with 250 (Postfix's smtpd answers 220). Both mean accepted; a proxy that took only
// 220 could not reach such a backend at all with `xclient: auto`.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type SmtpSink, startSmtpSink } from '@smtp-lb/testkit';
import { connectUpstream } from '../src/index.js';
import { body, identity, options } from './helpers/setup.js';

describe('XCLIENT with smtp-sink (250 reply)', { timeout: 30_000 }, () => {
  let sink: SmtpSink;
  before(async () => {
    sink = await startSmtpSink();
  });
  after(async () => {
    await sink?.stop();
  });

  it('takes the 250 as accepted and relays a message', async () => {
    const conn = await connectUpstream(options(sink, { xclient: 'auto' }), identity);
    try {
      assert.equal(conn.xclientSent, true);
      const env = await conn.envelope({ address: 'a@example.com', params: {} }, [
        { address: 'b@example.com', params: {} },
      ]);
      assert.equal(env.mail?.code, 250);
      assert.equal(env.rcpts[0]!.code, 250);
      const reply = await conn.data(body('Subject: x\r\n\r\nhello\r\n'), {
        bareNewlines: 'normalize',
        maxBytes: 1_000_000,
      });
      assert.equal(reply.code, 250);
    } finally {
      await conn.quit();
    }
  });
});
