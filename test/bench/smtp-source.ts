// Runs Postfix's smtp-source against one path and times it: `-s` parallel sessions, `-m` messages in
// all, `-l` bytes of payload, and `-d` to keep each connection for the next message. smtp-source
// exits non-zero on any reply it did not expect, so a run that returns was delivered in full.
import { runCommand } from '@smtp-lb/testkit';

export interface SourceLoad {
  sessions: number;
  messages: number;
  size: number;
  /** true: messages reuse connections (`-d`); false: a new connection per message. */
  reuse: boolean;
}

export interface SourceRun {
  seconds: number;
  /** Messages per second. */
  rate: number;
}

export function sourceArgs(load: SourceLoad, port: number): string[] {
  return [
    '-s',
    String(load.sessions),
    '-m',
    String(load.messages),
    '-l',
    String(load.size),
    ...(load.reuse ? ['-d'] : []),
    // Fixed names: smtp-source would otherwise use this machine's host name in HELO and addresses.
    '-M',
    'source.bench.test',
    '-f',
    'sender@source.bench.test',
    '-t',
    'rcpt@sink.bench.test',
    `127.0.0.1:${port}`,
  ];
}

export async function runSmtpSource(load: SourceLoad, port: number, timeoutMs: number): Promise<SourceRun> {
  const started = process.hrtime.bigint();
  const res = await runCommand('smtp-source', sourceArgs(load, port), { timeoutMs });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (res.code !== 0) {
    throw new Error(`smtp-source to port ${port} exited ${res.code}: ${(res.stdout + res.stderr).trim()}`);
  }
  return { seconds, rate: load.messages / seconds };
}
