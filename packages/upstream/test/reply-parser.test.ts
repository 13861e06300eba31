// Reply parsing: lines kept exactly as the backend sent them, enhanced codes, replies split over reads
// or packed into one, and garbage refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplyParseError, ReplyParser } from '../src/reply-parser.js';

const push = (p: ReplyParser, s: string) => p.push(Buffer.from(s));

describe('ReplyParser', () => {
  it('keeps multi-line replies verbatim, enhanced code included', () => {
    const p = new ReplyParser();
    assert.deepEqual(push(p, '550-5.1.1 <x@y>: Recipient address rejected\r\n550 5.1.1  two  spaces \r\n'), [
      {
        code: 550,
        enhanced: '5.1.1',
        lines: ['5.1.1 <x@y>: Recipient address rejected', '5.1.1  two  spaces '],
      },
    ]);
  });

  it('assembles replies split at any byte and splits replies sharing a read', () => {
    const wire = '220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n451 4.3.0 try later\r\n';
    const whole = push(new ReplyParser(), wire);
    assert.equal(whole.length, 3);
    for (let cut = 0; cut <= wire.length; cut++) {
      const p = new ReplyParser();
      const got = [...push(p, wire.slice(0, cut)), ...push(p, wire.slice(cut))];
      assert.deepEqual(got, whole, `cut at ${cut}`);
    }
    assert.deepEqual(whole[1]!.lines, ['mx', 'PIPELINING', 'SIZE 10']);
    assert.equal(whole[2]!.enhanced, '4.3.0');
  });

  it('accepts a bare code, a bare LF line end and UTF-8 text', () => {
    const p = new ReplyParser();
    assert.deepEqual(push(p, '250\n'), [{ code: 250, lines: [''] }]);
    assert.deepEqual(push(p, '250 2.0.0 übel\r\n'), [
      { code: 250, enhanced: '2.0.0', lines: ['2.0.0 übel'] },
    ]);
  });

  it('takes no enhanced code whose class differs from the reply or that is not one', () => {
    const p = new ReplyParser();
    assert.equal(push(p, '550 4.1.1 odd\r\n')[0]!.enhanced, undefined);
    assert.equal(push(p, '250 2.0.0x\r\n')[0]!.enhanced, undefined);
    assert.equal(push(p, '250 1.2.3.4 up\r\n')[0]!.enhanced, undefined);
  });

  it('refuses lines without a code, changing codes and endless lines', () => {
    assert.throws(() => push(new ReplyParser(), 'hello there\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '25 short\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '250x\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '600 no such class\r\n'), ReplyParseError);
    assert.throws(() => push(new ReplyParser(), '250-a\r\n251 b\r\n'), /changed from 250 to 251/);
    assert.throws(() => push(new ReplyParser(), `250 ${'x'.repeat(9000)}`), /longer than/);
  });

  it('forgets everything on reset (nothing read before a TLS handshake survives it)', () => {
    const p = new ReplyParser();
    assert.deepEqual(push(p, '250-injected\r\n250 also'), []);
    p.reset();
    assert.deepEqual(push(p, '220 fresh\r\n'), [{ code: 220, lines: ['fresh'] }]);
  });
});
