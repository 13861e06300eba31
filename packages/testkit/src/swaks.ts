// Debian's swaks as a real SMTP client in tests, and a parser of its transcript: which reply the
// server gave to each command, so a test asserts on codes and texts a user would see.
import { runCommand } from './process.js';

export interface SwaksOptions {
  /** host:port */
  server: string;
  from: string;
  to: string | readonly string[];
  /** Body text (swaks builds the headers). Ignored when `data` is given. */
  body?: string;
  /** The whole message (headers and body) sent as DATA, passed on stdin. */
  data?: string | Buffer;
  helo?: string;
  /** More swaks arguments, e.g. ['--pipeline'], ['--tls'], ['--quit-after', 'RCPT']. */
  extraArgs?: readonly string[];
  /** Kill swaks after this long (its own --timeout is set a little lower). Default 30 000 ms. */
  timeoutMs?: number;
}

export interface SmtpReply {
  code: number;
  /** Enhanced status code of the last line (RFC 3463), when there is one. */
  enhanced?: string;
  /** Text of every line without code and enhanced code, joined with '\n'. */
  text: string;
  /** The raw reply lines, e.g. ['250-mx.test', '250 8BITMIME']. */
  lines: string[];
}

export interface SmtpExchange {
  /** What the client sent: a command line, '(connect)' for the greeting, '.' for the end of DATA. */
  command: string;
  /** Upper-cased first word of `command` ('MAIL', 'RCPT', 'DATA', '.', '(connect)'). */
  verb: string;
  reply: SmtpReply;
}

export interface SwaksResult {
  /** swaks' exit code: 0 delivered; 2x = failure at a step (e.g. 24 RCPT, 25 DATA, 26 end of DATA). */
  code: number | null;
  stdout: string;
  stderr: string;
  transcript: SmtpExchange[];
  /** swaks' own error lines ('*** ...'), e.g. a refused connection or a dropped session. */
  errors: string[];
}

const SENT = /^ (?:->|~>) (.*)$/;
const RECEIVED = /^<(?:- |\*\*|~ |~\*) ?(.*)$/;
const REPLY_LINE = /^(\d{3})([- ]|$)(.*)$/;
const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)(.*)$/;

export async function runSwaks(options: SwaksOptions): Promise<SwaksResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const to = typeof options.to === 'string' ? options.to : options.to.join(',');
  const args = ['--server', options.server, '--from', options.from, '--to', to];
  args.push('--timeout', `${Math.max(1, Math.floor(timeoutMs / 1000) - 1)}s`);
  if (options.helo !== undefined) args.push('--helo', options.helo);
  if (options.data !== undefined) args.push('--data', '-');
  else if (options.body !== undefined) args.push('--body', options.body);
  args.push(...(options.extraArgs ?? []));
  const r = await runCommand('swaks', args, {
    timeoutMs,
    ...(options.data !== undefined ? { input: options.data } : {}),
  });
  const errors = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .filter((line) => line.startsWith('***'))
    .map((line) => line.replace(/^\*\*\*\s*/, ''));
  return {
    code: r.code,
    stdout: r.stdout,
    stderr: r.stderr,
    transcript: parseSwaksTranscript(r.stdout),
    errors,
  };
}

/** Pairs each reply in a swaks transcript with the command it answers (in order, so pipelining works). */
export function parseSwaksTranscript(text: string): SmtpExchange[] {
  const exchanges: SmtpExchange[] = [];
  const pending: string[] = [];
  let replyLines: string[] = [];
  let inData = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const sent = SENT.exec(line);
    if (sent) {
      const command = sent[1] as string;
      if (!inData) pending.push(command);
      else if (command === '.') {
        inData = false;
        pending.push('.');
      }
      continue;
    }
    const received = RECEIVED.exec(line);
    if (!received) continue;
    const replyLine = received[1] as string;
    replyLines.push(replyLine);
    const m = REPLY_LINE.exec(replyLine);
    if (m && m[2] !== '-') {
      const command = pending.shift() ?? (exchanges.length === 0 ? '(connect)' : '(unsolicited)');
      const reply = parseReply(replyLines);
      const verb = command.startsWith('(') ? command : (command.split(' ')[0] as string).toUpperCase();
      exchanges.push({ command, verb, reply });
      replyLines = [];
      if (verb === 'DATA' && reply.code === 354) inData = true;
    }
  }
  return exchanges;
}

function parseReply(lines: string[]): SmtpReply {
  const parts = lines.map((line) => {
    const rest = line.slice(4);
    const e = ENHANCED.exec(rest);
    return e ? { enhanced: e[1], text: e[2] as string } : { enhanced: undefined, text: rest };
  });
  const last = lines[lines.length - 1] as string;
  const reply: SmtpReply = {
    code: Number(last.slice(0, 3)),
    text: parts.map((p) => p.text).join('\n'),
    lines,
  };
  const enhanced = parts[parts.length - 1]?.enhanced;
  if (enhanced !== undefined) reply.enhanced = enhanced;
  return reply;
}

/** The reply to the first command with this verb ('MAIL', 'RCPT', 'DATA', '(connect)'). */
export function replyTo(transcript: readonly SmtpExchange[], verb: string): SmtpReply | undefined {
  const wanted = verb.toUpperCase();
  return transcript.find((x) => x.verb.toUpperCase() === wanted)?.reply;
}

/** The reply after the message content: the one that says whether the message was accepted. */
export function finalDataReply(transcript: readonly SmtpExchange[]): SmtpReply | undefined {
  return replyTo(transcript, '.');
}
