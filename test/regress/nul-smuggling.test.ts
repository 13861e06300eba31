// NUL smuggling (issue 11): a backend that drops NUL before it looks for the end of data reads
// `\r\n\x00.\r\n` as `\r\n.\r\n`, ends the message there and runs the rest of the body as commands,
// so a second message with a forged sender. Every SEC Consult sequence and every NUL variant, in one
// segment and split at every offset around it, through a node in front of such a lax backend and in
// front of a strict recording one: the backend gets exactly one message (the client's body with NUL
// removed, under `nulBytes: strip`) or, under `reject`, the client gets 550 5.6.0 and the backend no
// message; no backend ever sees the forged sender.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupAfterAll } from '../helpers/cleanup.js';
import { observedBackend } from '../helpers/lax-backend.js';
import { simpleConfig, startNode } from '../helpers/node.js';
import { SmtpDialog } from '../helpers/smtp-dialog.js';

// SEC Consult's end-of-data sequences (2023) and the NUL variants of issue 11.
const SEC_CONSULT = [
  '\n.\n',
  '\n.\r\n',
  '\r.\r',
  '\r.\n',
  '\r\n.\r',
  '\r\n.\n',
  '\r.\r\n',
  '\r\n\x00.\r\n',
  '\n..\n',
];
const NUL_VARIANTS = [
  '\n\x00.\n',
  '\r\x00.\r',
  '\r\n\x00\x00.\r\n',
  '\r\n\x00.\r',
  '\r\n\x00.\n',
  '\r\n.\x00\r\n',
  '\x00\r\n\x00.\r\n\x00',
];
const HEAD = 'Subject: smuggle\r\n\r\nhello';

interface Case {
  name: string;
  /** Content as the client sends it between 354 and the final `.` CRLF (ends with CRLF). */
  content: string;
  /** Where the sequence sits: the content is split at every offset from one before to one after. */
  at: [number, number];
}

function cases(): Case[] {
  const out: Case[] = [];
  const add = (name: string, head: string, seq: string) => {
    const n = out.length;
    const content =
      `X-Case: ${n}\r\n${head}${seq}` +
      'MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n' +
      `Subject: smuggled ${n}\r\n\r\nI should not exist\r\n`;
    const from = `X-Case: ${n}\r\n${head}`.length;
    out.push({ name, content, at: [from - 1, from + seq.length + 1] });
  };
  for (const seq of [...SEC_CONSULT, ...NUL_VARIANTS]) add(JSON.stringify(seq), HEAD, seq);
  // A NUL before the first dot of the content: `\x00.\r\n` reads as an empty message to a lax backend.
  add('NUL before the first dot of the content', '', '\x00.\r\n');
  return out;
}

/** What a backend must receive for `content`: our front's un-stuffing, NUL removed, CRLF only. */
function expected(content: string): string {
  return content
    .replace(/(^|\n)\.\./g, '$1.')
    .replaceAll('\x00', '')
    .replace(/\r\n|\r|\n/g, '\r\n');
}

interface Outcome {
  c: Case;
  split: number | undefined;
  reply: string;
}

async function send(port: number, c: Case, split: number | undefined): Promise<Outcome> {
  const d = await SmtpDialog.open(port);
  try {
    await d.read();
    await d.cmd('EHLO client.test');
    await d.cmd('MAIL FROM:<a@example.org>');
    assert.equal((await d.cmd('RCPT TO:<b@example.test>')).code, 250);
    assert.equal((await d.cmd('DATA')).code, 354);
    const wire = `${c.content}.\r\n`;
    if (split === undefined) d.write(wire);
    else {
      d.write(wire.slice(0, split));
      await sleep(5); // its own TCP segment
      d.write(wire.slice(split));
    }
    const r = await d.read();
    await d.cmd('QUIT');
    return { c, split, reply: r.raw };
  } finally {
    d.close();
  }
}

/** Every case in one segment and split at every offset around its sequence, a few sessions at once. */
async function sendAll(port: number): Promise<Outcome[]> {
  const jobs: Array<() => Promise<Outcome>> = [];
  for (const c of cases()) {
    jobs.push(() => send(port, c, undefined));
    for (let k = Math.max(1, c.at[0]); k <= c.at[1]; k++) jobs.push(() => send(port, c, k));
  }
  const out: Outcome[] = [];
  const worker = async () => {
    for (let job = jobs.shift(); job; job = jobs.shift()) out.push(await job());
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return out;
}

const caseOf = (data: string) => Number(/^X-Case: (\d+)\r\n/.exec(data)?.[1]);

describe('NUL smuggling through the node', { timeout: 180_000 }, () => {
  const cleanup = cleanupAfterAll();
  for (const kind of ['lax', 'strict'] as const) {
    for (const nul of ['reject', 'strip'] as const) {
      test(`${kind} backend, nulBytes: ${nul}`, async () => {
        const { address, mails, messages } = await observedBackend(kind, cleanup);
        const lb = await startNode(simpleConfig([address], { extraListener: `    nulBytes: ${nul}` }));
        cleanup.push(() => lb.stop());

        const outcomes = await sendAll(lb.port);
        // Let the backend see anything the node might still send.
        await sleep(300);

        assert.deepEqual(
          [...new Set(mails())],
          ['MAIL FROM:<a@example.org>'],
          'no backend saw any sender but the client’s own',
        );
        const byCase = new Map<number, string[]>();
        for (const data of messages()) byCase.set(caseOf(data), [...(byCase.get(caseOf(data)) ?? []), data]);
        const wrong: string[] = [];
        for (const o of outcomes) {
          const refused = nul === 'reject' && o.c.content.includes('\x00');
          const where = `${o.c.name} ${o.split === undefined ? 'in one segment' : `split at ${o.split}`}`;
          if (refused) {
            if (!/^550 5\.6\.0 /.test(o.reply)) wrong.push(`${where}: got ${JSON.stringify(o.reply)}`);
          } else if (!/^250 /.test(o.reply)) wrong.push(`${where}: got ${JSON.stringify(o.reply)}`);
        }
        cases().forEach((c, n) => {
          const got = byCase.get(n) ?? [];
          const refused = nul === 'reject' && c.content.includes('\x00');
          if (refused) {
            if (got.length > 0) wrong.push(`${c.name}: refused, yet ${got.length} message(s) at the backend`);
            return;
          }
          // One message per session that sent the case, each exactly the client's body.
          const sessions = outcomes.filter((o) => o.c.name === c.name).length;
          if (got.length !== sessions)
            wrong.push(`${c.name}: ${got.length} messages for ${sessions} sessions`);
          for (const data of got) {
            if (data !== expected(c.content)) wrong.push(`${c.name}: backend got ${JSON.stringify(data)}`);
          }
        });
        assert.deepEqual(wrong, [], `${wrong.length} wrong outcomes (of ${outcomes.length} sessions)`);
        if (nul === 'reject') {
          assert.ok(
            lb.logs.some((l) => JSON.stringify(l).includes('NUL byte in message content')),
            'a refused message has a log line',
          );
        }
      });
    }
  }
});
