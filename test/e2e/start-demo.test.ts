// `npm start`'s demo (scripts/start.mjs, after the build): two demo backends, one node on the
// example config, one message sent through it and saved where the README says.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { freePort } from '@smtp-lb/testkit';

const ROOT = resolve(import.meta.dirname, '../../..');

test('the demo relays its first message to a demo backend and saves it', async () => {
  // Free ports rather than the defaults (2525-2527, admin 9090): another run may be using them.
  const [port, b1, b2, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [join(ROOT, 'scripts/start.mjs')], {
    env: {
      ...process.env,
      SMTP_LB_LISTEN: `127.0.0.1:${port}`,
      SMTP_LB_DEMO_BACKEND_1: `127.0.0.1:${b1}`,
      SMTP_LB_DEMO_BACKEND_2: `127.0.0.1:${b2}`,
      SMTP_LB_ADMIN_LISTEN: `127.0.0.1:${admin}`,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  child.stderr.on('data', (b) => {
    out += b;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const sent = await new Promise<RegExpExecArray>((resolveSent, reject) => {
      const timer = setTimeout(() => reject(new Error(`no demo message within 30 s:\n${out}`)), 30_000);
      const check = () => {
        const m =
          /\[demo\] sent one message through smtp-lb on \S+: (250 2\.6\.0 Ok: queued as (\d+)-(\d+))/.exec(
            out,
          );
        if (m) {
          clearTimeout(timer);
          resolveSent(m);
        }
      };
      child.stdout.on('data', check);
      child.once('exit', () => reject(new Error(`the demo exited early:\n${out}`)));
    });
    const [, , backendPort, n] = sent;
    assert.ok([String(b1), String(b2)].includes(backendPort!), `saved by backend ${backendPort}:\n${out}`);
    const saved = join(ROOT, 'demo-mail', backendPort!, `${backendPort}-${n}.eml`);
    assert.ok(existsSync(saved), `${saved} missing:\n${out}`);
    assert.match(readFileSync(saved, 'latin1'), /This message went through smtp-lb to a demo backend\./);
  } finally {
    child.kill('SIGTERM');
    const code = await exited;
    for (const b of [b1, b2]) rmSync(join(ROOT, 'demo-mail', String(b)), { recursive: true, force: true });
    assert.equal(code, 0, out);
  }
});
