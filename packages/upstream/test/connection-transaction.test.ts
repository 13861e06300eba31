// Envelopes against the capture backend: pipelined in one write when offered, one by one otherwise,
// replies returned verbatim, nonsense replies refused, and RSET/QUIT/close behaviour.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectUpstream, type UpstreamError } from '../src/index.js';
import { identity, once, options, wireBackend } from './helpers/setup.js';

const mail = {
  address: 'a@x.test',
  params: { BODY: '8BITMIME', SIZE: '1234' } as Record<string, string | true>,
};
const rcpt = (address: string, params: Record<string, string | true> = {}) => ({ address, params });

describe('envelope', { timeout: 30_000 }, () => {
  it('pipelines MAIL and every RCPT in one write when the backend offers PIPELINING', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b), identity);
    const res = await conn.envelope(mail, [rcpt('b@y.test', { NOTIFY: 'NEVER' }), rcpt('c@y.test')]);
    assert.deepEqual(res, {
      mail: { code: 250, enhanced: '2.1.0', lines: ['2.1.0 Ok'] },
      rcpts: [
        { code: 250, enhanced: '2.1.5', lines: ['2.1.5 Ok'] },
        { code: 250, enhanced: '2.1.5', lines: ['2.1.5 Ok'] },
      ],
    });
    await conn.quit();
    const s = b.sessions[0]!;
    assert.deepEqual(s.lines.slice(1, 4), [
      'MAIL FROM:<a@x.test> BODY=8BITMIME SIZE=1234',
      'RCPT TO:<b@y.test> NOTIFY=NEVER',
      'RCPT TO:<c@y.test>',
    ]);
    // Greeting and EHLO had been answered; all three commands arrived before the backend answered MAIL.
    assert.deepEqual(s.repliesBefore.slice(1, 4), [2, 2, 2]);
  });

  it('sends one command at a time without PIPELINING', async () => {
    const b = await wireBackend({ capabilities: ['8BITMIME'] });
    const conn = await connectUpstream(options(b), identity);
    const res = await conn.envelope(mail, [rcpt('b@y.test'), rcpt('c@y.test')]);
    assert.deepEqual(
      res.rcpts.map((r) => r.code),
      [250, 250],
    );
    await conn.quit();
    assert.deepEqual(b.sessions[0]!.repliesBefore.slice(1, 4), [2, 3, 4]);
  });

  it('returns the backend replies verbatim, multi-line and enhanced codes included', async () => {
    const b = await wireBackend({
      reply: ({ verb, arg }) =>
        verb === 'RCPT' && arg.includes('nobody')
          ? '550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1  Please  check. x1-2si'
          : undefined,
    });
    const conn = await connectUpstream(options(b), identity);
    const res = await conn.envelope(mail, [rcpt('nobody@y.test'), rcpt('b@y.test')]);
    assert.deepEqual(res.rcpts[0], {
      code: 550,
      enhanced: '5.1.1',
      lines: [
        '5.1.1 The email account that you tried to reach does not exist.',
        '5.1.1  Please  check. x1-2si',
      ],
    });
    assert.equal(res.rcpts[1]!.code, 250);
    await conn.quit();
  });

  it('after a refused MAIL still sends the RCPTs, which the backend answers itself', async () => {
    for (const capabilities of [['PIPELINING'], []]) {
      const b = await wireBackend({
        capabilities,
        reply: ({ verb }) => (verb === 'MAIL' ? '452 4.3.1 Insufficient system storage' : undefined),
      });
      const conn = await connectUpstream(options(b), identity);
      const res = await conn.envelope(mail, [rcpt('b@y.test')]);
      assert.equal(res.mail!.code, 452);
      assert.equal(res.mail!.enhanced, '4.3.1');
      assert.match(res.rcpts[0]!.lines[0]!, /need MAIL/);
      assert.equal(res.rcpts[0]!.code, 503);
      await conn.quit();
    }
  });

  it('sends RCPTs alone when MAIL was sent before, and RSET resets the transaction', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b), identity);
    await conn.envelope(mail, [rcpt('b@y.test')]);
    const more = await conn.envelope(undefined, [rcpt('c@y.test')]);
    assert.equal(more.mail, undefined);
    assert.equal(more.rcpts[0]!.code, 250);
    assert.deepEqual(await conn.rset(), { code: 250, enhanced: '2.0.0', lines: ['2.0.0 Ok'] });
    assert.equal((await conn.envelope(undefined, [rcpt('d@y.test')])).rcpts[0]!.code, 503);
    await conn.quit();
    assert.ok(
      b.sessions[0]!.lines.every((l) => !/[\r\n]/.test(l)),
      'every command ended with CRLF',
    );
    assert.equal(b.sessions[0]!.trailing, undefined);
  });

  it('fails EPROTOCOL on a 354 to RCPT or a reply without a code, and closes', async () => {
    const b = await wireBackend({ reply: ({ verb }) => (verb === 'RCPT' ? '354 go ahead' : undefined) });
    const conn = await connectUpstream(options(b), identity);
    await assert.rejects(conn.envelope(mail, [rcpt('b@y.test')]), (e: UpstreamError) => {
      assert.equal(e.code, 'EPROTOCOL');
      assert.equal(e.stage, 'rcpt');
      assert.equal(e.responseCode, 354);
      return true;
    });
    assert.equal(conn.closed, true);

    const g = await wireBackend({ reply: ({ verb }) => (verb === 'MAIL' ? 'whatever' : undefined) });
    const c2 = await connectUpstream(options(g), identity);
    await assert.rejects(c2.envelope(mail, [rcpt('b@y.test')]), { code: 'EPROTOCOL', stage: 'mail' });
  });

  it('fails ETIMEOUT at the stage that got no reply', async () => {
    const b = await wireBackend({
      reply: ({ verb, arg }) => (verb === 'RCPT' && arg.includes('slow') ? null : undefined),
    });
    const o = options(b);
    const conn = await connectUpstream({ ...o, timeouts: { ...o.timeouts, command: 150 } }, identity);
    await assert.rejects(conn.envelope(mail, [rcpt('b@y.test'), rcpt('slow@y.test')]), {
      code: 'ETIMEOUT',
      stage: 'rcpt',
    });
    assert.equal(conn.closed, true);
    await assert.rejects(conn.rset(), { code: 'ECLOSED', stage: 'rset' });
  });

  it('refuses a second operation while one is in flight', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b), identity);
    const first = conn.envelope(mail, [rcpt('b@y.test')]);
    await assert.rejects(conn.rset(), /rset\(\) called while envelope\(\) is running/);
    assert.equal((await first).rcpts[0]!.code, 250);
    await conn.quit();
  });

  it('refuses CR or LF inside a command instead of smuggling it', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b), identity);
    await assert.rejects(conn.envelope({ address: 'a@x\r\nRCPT TO:<evil@x>', params: {} }, []), TypeError);
    await conn.quit();
    assert.deepEqual(b.sessions[0]!.lines, ['EHLO proxy.test', 'QUIT']);
  });

  it('quit says QUIT, closes, emits close once and never rejects', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b), identity);
    let closes = 0;
    conn.on('close', () => closes++);
    await conn.quit();
    await conn.quit();
    if (closes === 0) await once(conn, 'close');
    assert.equal(closes, 1);
    assert.equal(conn.closed, true);
    assert.equal(b.sessions[0]!.lines.at(-1), 'QUIT');
  });

  it('emits close when the backend goes away, and later calls fail ECLOSED with their stage', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b), identity);
    const closed = once(conn, 'close');
    await b.close();
    await closed;
    assert.equal(conn.closed, true);
    await assert.rejects(conn.envelope(mail, [rcpt('b@y.test')]), { code: 'ECLOSED', stage: 'mail' });
    await conn.quit();
  });
});
