// CPU cost per message of our backend SMTP client (SmtpUpstreamConnection) against Postfix's
// smtp-sink, with a new connection per message and with reused connections, next to a floor: the same
// dialogue from a minimal hand-written client (no parser, no timers, no promises per command).
// Prints this process's CPU (user + system) per message and the ratio to the floor, medians of
// interleaved rounds. With UPSTREAM_BASELINE=<path of another build's index.js> (e.g. the last
// commit's, built elsewhere) that build runs in the same rounds too, for an A/B comparison.
// Run: node test/dist/bench/upstream-cost.js [messages-per-round] [rounds]
import { spawn } from 'node:child_process';
import net from 'node:net';
import { Readable } from 'node:stream';
import type { UpstreamConnection, UpstreamOptions } from '@smtp-lb/upstream';
import * as current from '@smtp-lb/upstream';

type Client = typeof current;
const baselinePath = process.env.UPSTREAM_BASELINE;
const baseline: Client | undefined = baselinePath ? await import(baselinePath) : undefined;

const perRound = Number(process.argv[2] ?? 4000);
const rounds = Number(process.argv[3] ?? 5);
const width = 20;
const content = Buffer.from(`Subject: bench\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(52));
const mail = { address: 'sender@source.bench.test', params: {} };
const rcpts = [{ address: 'rcpt@sink.bench.test', params: {} }];
const identity = { address: '192.0.2.7', port: 41000, localAddress: '127.0.0.1', localPort: 25 };

type Mode = 'new' | 'reused';

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function options(port: number): UpstreamOptions {
  const t = 10_000;
  return {
    host: '127.0.0.1',
    port,
    heloName: 'proxy.bench.test',
    tls: { mode: 'none', verify: false },
    xclient: 'off',
    proxyProtocol: 'off',
    timeouts: { connect: t, greeting: t, command: t, dataStart: t, dataDone: t },
  };
}

/** Runs `n` messages over `width` workers; returns CPU µs per message. */
async function measure(n: number, worker: (take: () => boolean) => Promise<void>): Promise<number> {
  let left = n;
  const take = () => left-- > 0;
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: width }, () => worker(take)));
  const cpu = process.cpuUsage(cpu0);
  return (cpu.user + cpu.system) / n;
}

function ours(client: Client, port: number, mode: Mode) {
  const { connectUpstream } = client;
  const opts = options(port);
  const message = async (conn: UpstreamConnection) => {
    await conn.envelope(mail, rcpts);
    const reply = await conn.data(Readable.from([content]), { bareNewlines: 'normalize' });
    if (reply.code !== 250) throw new Error(`DATA got ${reply.code}`);
  };
  return async (take: () => boolean) => {
    if (mode === 'new') {
      while (take()) {
        const conn = await connectUpstream(opts, identity);
        await message(conn);
        await conn.quit();
      }
      return;
    }
    const conn = await connectUpstream(opts, identity);
    while (take()) await message(conn);
    await conn.quit();
  };
}

/** The same bytes on the wire, driven by counting final reply lines. */
function floor(port: number, mode: Mode) {
  const envelope = 'MAIL FROM:<sender@source.bench.test>\r\nRCPT TO:<rcpt@sink.bench.test>\r\n';
  const dialogue = (socket: net.Socket) => {
    let wanted = 0;
    let wake: (() => void) | undefined;
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) {
        const start = text.lastIndexOf('\n', i - 1) + 1;
        if (text[start + 3] === ' ' && --wanted === 0) wake?.();
      }
    });
    return (data: string | Buffer, replies: number) =>
      new Promise<void>((resolve) => {
        wanted = replies;
        wake = resolve;
        if (data.length > 0) socket.write(data);
      });
  };
  const open = async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const say = dialogue(socket);
    await say('', 1);
    await say('EHLO proxy.bench.test\r\n', 1);
    return { socket, say };
  };
  const message = async (say: ReturnType<typeof dialogue>) => {
    await say(envelope, 2);
    await say('DATA\r\n', 1);
    await say(Buffer.concat([content, Buffer.from('.\r\n')]), 1);
  };
  const close = async ({ socket, say }: Awaited<ReturnType<typeof open>>) => {
    await say('QUIT\r\n', 1);
    socket.destroy();
  };
  return async (take: () => boolean) => {
    if (mode === 'new') {
      while (take()) {
        const c = await open();
        await message(c.say);
        await close(c);
      }
      return;
    }
    const c = await open();
    while (take()) await message(c.say);
    await close(c);
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const port = await freePort();
  const sink = spawn('/usr/sbin/smtp-sink', ['-u', 'nobody', `127.0.0.1:${port}`, '1024'], {
    stdio: 'ignore',
  });
  try {
    for (let i = 0; i < 50; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(true)).on('error', () => resolve(false));
        s.on('connect', () => s.destroy());
      });
      if (up) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const mode of ['new', 'reused'] as const) {
      const n = mode === 'new' ? Math.ceil(perRound / 3) : perRound;
      const contenders: Array<[string, (take: () => boolean) => Promise<void>]> = [
        ['floor', floor(port, mode)],
        ['upstream', ours(current, port, mode)],
      ];
      if (baseline) contenders.push(['baseline', ours(baseline, port, mode)]);
      // A warm-up round of each, then interleaved rounds.
      for (const [, run] of contenders) await measure(n, run);
      const cpu = contenders.map(() => [] as number[]);
      for (let r = 0; r < rounds; r++) {
        for (const [i, [, run]] of contenders.entries()) cpu[i]!.push(await measure(n, run));
      }
      const floorCpu = median(cpu[0]!);
      const rows = contenders.map(([name], i) => {
        const m = median(cpu[i]!);
        const all = cpu[i]!.map((x) => x.toFixed(0)).join(' ');
        return `  ${name.padEnd(8)} ${m.toFixed(1).padStart(7)} µs/msg  ${(m / floorCpu).toFixed(2)} x floor  (${all})`;
      });
      console.log(
        `${mode}: ${n} messages a round, ${rounds} rounds, CPU of this process\n${rows.join('\n')}`,
      );
    }
  } finally {
    sink.kill();
  }
}

await main();
