#!/usr/bin/env node
// The demo behind `npm start`: two small demo backends (Nodemailer's smtp-server, through testkit's
// startSmtpServerBackend, writing each message to demo-mail/), one smtp-lb node in front of them, and
// one message sent through it on start.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const require = createRequire(join(root, 'packages/proxy/package.json'));
const { startSmtpServerBackend } = await import(join(root, 'packages/testkit/dist/src/index.js'));
const nodemailer = (await import(require.resolve('nodemailer'))).default;

// The defaults are examples/smtp-lb.yaml's; the same variables move the demo (the e2e test does).
const listen = process.env.SMTP_LB_LISTEN || '127.0.0.1:2525';
const portOf = (address) => Number(address.slice(address.lastIndexOf(':') + 1));
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), portOf(listen)];
const backends = [
  process.env.SMTP_LB_DEMO_BACKEND_1 || '127.0.0.1:2526',
  process.env.SMTP_LB_DEMO_BACKEND_2 || '127.0.0.1:2527',
];
const mailDir = join(root, 'demo-mail');

async function demoBackend(port) {
  return startSmtpServerBackend({
    port,
    hostname: `backend-${port}.example.test`,
    dataReply: (msg) => {
      const id = `${port}-${msg.id}`;
      mkdirSync(join(mailDir, String(port)), { recursive: true });
      const file = join(mailDir, String(port), `${id}.eml`);
      writeFileSync(file, msg.data);
      console.log(
        `[demo backend :${port}] message from ${msg.mailFrom} for ${msg.rcptTo.join(', ')} ` +
          `(client ${msg.client.address}) saved to ${file}`,
      );
      return `Ok: queued as ${id}`;
    },
  });
}

for (const address of backends) await demoBackend(portOf(address));
const node = spawn(
  process.execPath,
  [join(root, 'packages/proxy/dist/src/cli.js'), '--config', join(root, 'examples/smtp-lb.yaml')],
  {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, SMTP_LB_LISTEN: listen },
  },
);
node.on('exit', (code) => {
  console.log(`smtp-lb exited with ${code}`);
  process.exit(code ?? 1);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => node.kill('SIGTERM'));

// Wait for the listener, then send one message through it.
const transport = nodemailer.createTransport({ host, port, secure: false, ignoreTLS: true });
for (let i = 0; ; i++) {
  try {
    const info = await transport.sendMail({
      from: 'newcomer@example.org',
      to: 'postmaster@example.test',
      subject: 'Hello through smtp-lb',
      text: 'This message went through smtp-lb to a demo backend.\n',
    });
    console.log(`\n[demo] sent one message through smtp-lb on ${listen}: ${info.response}`);
    break;
  } catch (err) {
    if (i > 50) throw err;
    await new Promise((r) => setTimeout(r, 200));
  }
}
console.log(`
smtp-lb is running on ${listen} in front of demo backends on ${backends.join(' and ')}.
Send a message yourself:
  swaks --server ${listen} --from you@example.org --to postmaster@example.test
Messages land in ${mailDir}/. Ctrl-C stops everything.
`);
