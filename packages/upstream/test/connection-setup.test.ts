// Establishing a backend connection against the capture backend: greeting, EHLO and its HELO
// fallback, STARTTLS in its three modes, XCLIENT and PROXY headers, and how each one fails.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { selfSignedCert } from '@smtp-lb/testkit';
import { connectUpstream, type UpstreamError } from '../src/index.js';
import { backend, esmtp, identity, options, stub, wireBackend } from './helpers/setup.js';

function expectError(code: string, stage: string, extra: Partial<UpstreamError> = {}) {
  return (err: unknown) => {
    const e = err as UpstreamError;
    assert.equal(e.name, 'UpstreamError', String(err));
    assert.equal(e.code, code, e.message);
    assert.equal(e.stage, stage, e.message);
    for (const [k, v] of Object.entries(extra)) assert.deepEqual(e[k as keyof UpstreamError], v, k);
    return true;
  };
}

describe('connecting', { timeout: 30_000 }, () => {
  it('reads the greeting and the EHLO capabilities', async () => {
    const b = await wireBackend({ greeting: '220-capture.test hello\r\n220 more' });
    const conn = await connectUpstream(options(b), identity);
    assert.deepEqual(conn.greeting, { code: 220, lines: ['capture.test hello', 'more'] });
    assert.deepEqual(
      [...conn.capabilities],
      [
        ['PIPELINING', ''],
        ['8BITMIME', ''],
        ['SMTPUTF8', ''],
        ['SIZE', '104857600'],
        ['ENHANCEDSTATUSCODES', ''],
        ['XCLIENT', 'ADDR PORT PROTO HELO NAME LOGIN DESTADDR DESTPORT'],
      ],
    );
    assert.equal(conn.secure, false);
    assert.equal(conn.xclientSent, false, "xclient 'off' sends none even when offered");
    await conn.quit();
    assert.deepEqual(b.sessions[0]!.lines, ['EHLO proxy.test', 'QUIT']);
  });

  it('falls back to HELO when EHLO gets a 5xx, and fails EEHLO when both are refused', async () => {
    const b = await wireBackend({ reply: ({ verb }) => (verb === 'EHLO' ? '502 5.5.2 what' : undefined) });
    const conn = await connectUpstream(options(b), identity);
    assert.equal(conn.capabilities.size, 0);
    await conn.quit();
    assert.deepEqual(b.sessions[0]!.lines.slice(0, 2), ['EHLO proxy.test', 'HELO proxy.test']);

    const none = await wireBackend({
      reply: ({ verb }) => (verb === 'EHLO' || verb === 'HELO' ? '550 5.7.1 go away' : undefined),
    });
    await assert.rejects(
      connectUpstream(options(none), identity),
      expectError('EEHLO', 'ehlo', { responseCode: 550, enhancedCode: '5.7.1', command: 'HELO proxy.test' }),
    );
    const busy = await wireBackend({ reply: ({ verb }) => (verb === 'EHLO' ? '421 4.3.2 busy' : undefined) });
    await assert.rejects(
      connectUpstream(options(busy), identity),
      expectError('EEHLO', 'ehlo', { responseCode: 421 }),
    );
    assert.deepEqual(busy.sessions[0]!.lines, ['EHLO proxy.test'], 'no HELO after a 4xx');
  });

  it('fails EGREETING on a 554 greeting, with the reply', async () => {
    const b = await wireBackend({ greeting: '554 5.3.2 not now' });
    await assert.rejects(
      connectUpstream(options(b), identity),
      expectError('EGREETING', 'greeting', {
        responseCode: 554,
        enhancedCode: '5.3.2',
        response: '554 5.3.2 not now',
      }),
    );
  });

  it('fails ECONNECT when nothing listens', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((r) => server.close(r));
    await assert.rejects(connectUpstream(options({ port }), identity), expectError('ECONNECT', 'connect'));
  });

  it('fails ETIMEOUT at the greeting stage when the greeting is late', async () => {
    const b = await wireBackend({ greetingDelayMs: 1000 });
    const t = options(b).timeouts;
    await assert.rejects(
      connectUpstream(options(b, { timeouts: { ...t, greeting: 100 } }), identity),
      expectError('ETIMEOUT', 'greeting'),
    );
  });

  it('gives up with EABORTED when the caller aborts while connecting', async () => {
    const b = await wireBackend({ greetingDelayMs: 1000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(
      connectUpstream(options(b), identity, ac.signal),
      expectError('EABORTED', 'greeting', { abortReason: 'caller' }),
    );
    await assert.rejects(
      connectUpstream(options(b), identity, ac.signal),
      expectError('EABORTED', 'connect'),
    );
  });

  it('refuses timeouts that setTimeout would turn into no wait at all', async () => {
    const b = await wireBackend();
    const t = options(b).timeouts;
    for (const bad of [0, -1, Number.POSITIVE_INFINITY, 2 ** 31]) {
      await assert.rejects(
        connectUpstream(options(b, { timeouts: { ...t, dataDone: bad } }), identity),
        TypeError,
      );
    }
    assert.equal(b.sessions.length, 0, 'nothing was connected');
  });

  it('fails EPROTOCOL when the backend answers EHLO with garbage', async () => {
    const b = await wireBackend({ reply: ({ verb }) => (verb === 'EHLO' ? 'hello there' : undefined) });
    await assert.rejects(connectUpstream(options(b), identity), expectError('EPROTOCOL', 'ehlo'));
  });
});

describe('STARTTLS', { timeout: 30_000 }, () => {
  it('upgrades when offered (opportunistic), verifies against a CA, and says EHLO again', async () => {
    const cert = await selfSignedCert();
    const b = await wireBackend({ tls: cert });
    const conn = await connectUpstream(
      options(b, { tls: { mode: 'opportunistic', verify: true, ca: cert.cert } }),
      identity,
    );
    assert.equal(conn.secure, true);
    assert.equal(
      conn.capabilities.has('STARTTLS'),
      false,
      'capabilities come from the EHLO after the handshake',
    );
    const res = await conn.envelope({ address: 'a@x.test', params: {} }, [
      { address: 'b@y.test', params: {} },
    ]);
    assert.equal(res.rcpts[0]!.code, 250);
    await conn.quit();
    const s = b.sessions[0]!;
    assert.equal(s.tls, true);
    for (let i = 0; i < 100 && b.current > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(b.current, 0, 'the TLS connection is really closed');
    assert.deepEqual(s.lines.slice(0, 3), ['EHLO proxy.test', 'STARTTLS', 'EHLO proxy.test']);
  });

  it('fails ETLS when the certificate cannot be verified', async () => {
    const b = await wireBackend({ tls: await selfSignedCert() });
    await assert.rejects(
      connectUpstream(options(b, { tls: { mode: 'opportunistic', verify: true } }), identity),
      expectError('ETLS', 'starttls'),
    );
    assert.ok(!b.sessions[0]!.lines.some((l) => l.startsWith('MAIL')));
  });

  it('required: fails ETLS when STARTTLS is not offered, before any transaction', async () => {
    const b = await wireBackend();
    await assert.rejects(
      connectUpstream(options(b, { tls: { mode: 'required', verify: false } }), identity),
      expectError('ETLS', 'starttls'),
    );
    assert.deepEqual(b.sessions[0]!.lines, ['EHLO proxy.test']);
  });

  it('opportunistic: stays in plaintext when STARTTLS is not offered or refused; required fails', async () => {
    const plain = await wireBackend();
    const c1 = await connectUpstream(
      options(plain, { tls: { mode: 'opportunistic', verify: false } }),
      identity,
    );
    assert.equal(c1.secure, false);
    await c1.quit();

    const cert = await selfSignedCert();
    const refuse = ({ verb }: { verb: string }) =>
      verb === 'STARTTLS' ? '454 4.7.0 TLS not available' : undefined;
    const b = await wireBackend({ tls: cert, reply: refuse });
    const c2 = await connectUpstream(options(b, { tls: { mode: 'opportunistic', verify: false } }), identity);
    assert.equal(c2.secure, false);
    const res = await c2.envelope({ address: '', params: {} }, [{ address: 'b@y.test', params: {} }]);
    assert.equal(res.mail!.code, 250, 'the plaintext session goes on');
    await c2.quit();
    await assert.rejects(
      connectUpstream(options(b, { tls: { mode: 'required', verify: false } }), identity),
      expectError('ETLS', 'starttls', { responseCode: 454 }),
    );
  });

  it('discards what the backend sent after its 220 and before the handshake (RFC 3207 4.2)', async () => {
    const b = await wireBackend({
      tls: await selfSignedCert(),
      reply: ({ verb }) =>
        verb === 'STARTTLS' ? '220 2.0.0 go\r\n250-injected\r\n250 AUTH PLAIN' : undefined,
    });
    const conn = await connectUpstream(options(b, { tls: { mode: 'required', verify: false } }), identity);
    assert.equal(conn.secure, true);
    assert.equal(conn.capabilities.has('AUTH'), false);
    assert.equal(conn.capabilities.has('PIPELINING'), true, 'the real EHLO reply after the handshake');
    await conn.quit();
  });

  it('fails ETIMEOUT at starttls when the handshake never completes', async () => {
    let started = false;
    // After its 220 this backend answers nothing, not even the ClientHello.
    const s = await stub((line) => {
      if (started) return undefined;
      started = line === 'STARTTLS';
      return started ? '220 go' : esmtp(['STARTTLS'])(line);
    });
    const o = options(s);
    await assert.rejects(
      connectUpstream(
        { ...o, tls: { mode: 'required', verify: false }, timeouts: { ...o.timeouts, command: 200 } },
        identity,
      ),
      expectError('ETIMEOUT', 'starttls'),
    );
  });
});

describe('XCLIENT', { timeout: 30_000 }, () => {
  const who = { ...identity, address: '2001:db8::7', helo: 'client example+x', login: 'jörg' };

  it('sends the offered attributes xtext-encoded, then EHLO again', async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b, { xclient: 'auto' }), who);
    assert.equal(conn.xclientSent, true);
    await conn.quit();
    const s = b.sessions[0]!;
    assert.deepEqual(s.xclient, {
      ADDR: 'IPV6:2001:db8::7',
      PORT: '41000',
      PROTO: 'ESMTP',
      HELO: 'client example+x',
      NAME: '[UNAVAILABLE]',
      LOGIN: 'jörg',
      DESTADDR: '198.51.100.1',
      DESTPORT: '25',
    });
    assert.deepEqual(s.ehlo, ['proxy.test', 'proxy.test']);
    assert.equal(
      s.lines[1],
      'XCLIENT PORT=41000 PROTO=ESMTP HELO=client+20example+2Bx LOGIN=j+C3+B6rg DESTADDR=198.51.100.1 DESTPORT=25 ADDR=IPV6:2001:db8::7 NAME=[UNAVAILABLE]',
    );
  });

  it('smtp-server takes what it offers of them (no DESTADDR, DESTPORT) and sees the client', async () => {
    const b = await backend();
    const conn = await connectUpstream(options(b, { xclient: 'auto' }), who);
    assert.equal(conn.xclientSent, true);
    await conn.quit();
    const s = b.sessions[0]!;
    assert.equal(s.replies[2], '220 capture.test ESMTP\r\n', 'its answer to our XCLIENT');
    assert.deepEqual(
      s.lines.filter((l) => l.startsWith('XCLIENT')),
      [
        'XCLIENT PORT=41000 PROTO=ESMTP HELO=client+20example+2Bx LOGIN=j+C3+B6rg ADDR=IPV6:2001:db8::7 NAME=[UNAVAILABLE]',
      ],
    );
    assert.deepEqual(s.client, { address: '2001:db8::7', port: 41000 });
    // Its xtext decoding gives one character per byte: the UTF-8 of LOGIN arrives, read as latin1.
    assert.deepEqual(s.xclient, {
      PORT: '41000',
      PROTO: 'ESMTP',
      HELO: 'client example+x',
      LOGIN: Buffer.from('jörg').toString('latin1'),
      ADDR: '2001:db8::7',
      NAME: '',
    });
    assert.deepEqual(s.ehlo, ['proxy.test', 'proxy.test'], 'EHLO again, with our name: the HELO has a space');
  });

  it("says EHLO with the client's own HELO name after XCLIENT when it is a usable one", async () => {
    const b = await wireBackend();
    const conn = await connectUpstream(options(b, { xclient: 'auto' }), {
      ...who,
      helo: 'mx.client.example',
    });
    await conn.quit();
    assert.deepEqual(b.sessions[0]!.ehlo, ['proxy.test', 'mx.client.example']);
    assert.equal(b.sessions[0]!.xclient.HELO, 'mx.client.example');
  });

  it('sends only what the backend lists, split over commands within 512 octets', async () => {
    const b = await wireBackend({ capabilities: ['PIPELINING', 'XCLIENT NAME HELO ADDR'] });
    const helo = 'h'.repeat(240);
    const name = 'n'.repeat(240);
    const conn = await connectUpstream(options(b, { xclient: 'auto' }), { ...who, helo, name });
    await conn.quit();
    const s = b.sessions[0]!;
    const xc = s.lines.filter((l) => l.startsWith('XCLIENT'));
    assert.equal(xc.length, 2);
    for (const l of xc) assert.ok(l.length + 2 <= 512);
    assert.deepEqual(s.xclient, { ADDR: 'IPV6:2001:db8::7', HELO: helo, NAME: name });
  });

  it('fails closed with EXCLIENT when the backend refuses it', async () => {
    const b = await wireBackend({
      reply: ({ verb }) => (verb === 'XCLIENT' ? '550 5.7.0 Error: insufficient authorization' : undefined),
    });
    await assert.rejects(
      connectUpstream(options(b, { xclient: 'auto' }), who),
      expectError('EXCLIENT', 'xclient', { responseCode: 550, enhancedCode: '5.7.0' }),
    );
    assert.ok(!b.sessions[0]!.lines.some((l) => l.startsWith('MAIL')));
  });

  it('skips XCLIENT when the backend does not offer it', async () => {
    const b = await wireBackend({ capabilities: ['PIPELINING'] });
    const conn = await connectUpstream(options(b, { xclient: 'auto' }), who);
    assert.equal(conn.xclientSent, false);
    await conn.quit();
    assert.deepEqual(b.sessions[0]!.lines, ['EHLO proxy.test', 'QUIT']);
  });
});

describe('PROXY header', { timeout: 30_000 }, () => {
  const cases = [
    {
      name: 'v1 TCP4 from IPv4-mapped addresses',
      version: 'v1' as const,
      who: { ...identity, address: '::ffff:192.0.2.7', localAddress: '::ffff:198.51.100.1' },
      bytes: Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 41000 25\r\n'),
    },
    {
      name: 'v1 TCP6',
      version: 'v1' as const,
      who: { ...identity, address: '2001:db8::7', localAddress: '2001:db8::1' },
      bytes: Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 41000 25\r\n'),
    },
    {
      name: 'v2 TCP4',
      version: 'v2' as const,
      who: identity,
      bytes: Buffer.from(
        '0d0a0d0a000d0a515549540a' + '2111000c' + 'c0000207' + 'c6336401' + 'a028' + '0019',
        'hex',
      ),
    },
    {
      name: 'v2 TCP6',
      version: 'v2' as const,
      who: { ...identity, address: '2001:db8::7', localAddress: '2001:db8::1' },
      bytes: Buffer.from(
        '0d0a0d0a000d0a515549540a' +
          '21210024' +
          '20010db8000000000000000000000007' +
          '20010db8000000000000000000000001' +
          'a0280019',
        'hex',
      ),
    },
  ];
  for (const c of cases) {
    it(`sends ${c.name} first, byte for byte`, async () => {
      const b = await wireBackend({ expectProxyHeader: true });
      const conn = await connectUpstream(options(b, { proxyProtocol: c.version }), c.who);
      await conn.quit();
      assert.deepEqual(b.sessions[0]!.proxyHeader, c.bytes);
      assert.deepEqual(b.sessions[0]!.bytes().subarray(0, c.bytes.length), c.bytes);
      assert.deepEqual(b.sessions[0]!.lines, ['EHLO proxy.test', 'QUIT']);
    });
  }

  for (const c of cases.filter((x) => x.version === 'v1')) {
    it(`smtp-server reads our ${c.name} and sees the client`, async () => {
      const b = await backend({ expectProxyHeader: true });
      const conn = await connectUpstream(options(b, { proxyProtocol: 'v1' }), c.who);
      await conn.quit();
      const s = b.sessions[0]!;
      assert.deepEqual(s.proxyHeader, c.bytes);
      assert.deepEqual(s.client, { address: c.who.address.replace('::ffff:', ''), port: 41000 });
      assert.deepEqual(s.lines, ['EHLO proxy.test', 'QUIT']);
    });
  }
});
