// A node run as its own process (the real `smtp-lb` command), for tests that need several nodes,
// SIGKILL, or a process that outlives a Redis outage.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { NodeStatus } from '@smtp-lb/proxy';
import { freePort } from '@smtp-lb/testkit';
import type { Cleanup } from './cleanup.js';
import { SmtpDialog } from './smtp-dialog.js';

export const CLI = resolve(import.meta.dirname, '../../../packages/proxy/dist/src/cli.js');

export interface CliNode {
  id: string;
  port: number;
  adminPort: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  status(): Promise<NodeStatus>;
  kill(signal?: NodeJS.Signals): void;
}

const dir = mkdtempSync(join(tmpdir(), 'smtp-lb-nodes-'));

const START_TIMEOUT_MS = 60_000;

/** `smtp-lb --config file` as a child process, its stdout and stderr kept. */
function spawnCli(file: string): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return { child, output: () => out };
}

/** Starts `smtp-lb --config` on free ports; `body` is the config without node, listeners and admin. */
export async function startCliNode(id: string, body: string): Promise<CliNode> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const file = join(dir, `${id}.yaml`);
  writeFileSync(
    file,
    `node: { id: ${id} }
listeners:
  - { name: inbound, listen: "127.0.0.1:${port}", hostname: ${id}.test, pool: default }
admin: { listen: "127.0.0.1:${adminPort}" }
log: { level: info }
${body}`,
  );
  const { child, output } = spawnCli(file);
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const node: CliNode = {
    id,
    port,
    adminPort,
    child,
    exited,
    output,
    status: async () => (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as NodeStatus,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  // Generous: a node's start (loading the compiled modules, connecting to Redis) takes seconds on a
  // loaded 2-core machine.
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const c = await SmtpDialog.open(port).catch(() => undefined);
    if (c) {
      c.close();
      return node;
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`node ${id} did not start:\n${output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `smtp-lb --config file` as a child (killed by `cleanup`) and a first dialog once `port` answers. */
export async function spawnConfigNode(
  file: string,
  port: number,
  cleanup: Cleanup,
): Promise<{ child: ChildProcess; output: () => string; dialog: SmtpDialog }> {
  const { child, output } = spawnCli(file);
  cleanup.push(() => {
    child.kill('SIGKILL');
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const dialog = await SmtpDialog.open(port).catch(() => undefined);
    if (dialog) return { child, output, dialog };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`node did not start: ${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The resident set size of a process, from /proc. */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}
