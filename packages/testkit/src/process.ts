// Child processes and temporary directories for tests. A process started here runs in its own
// process group; stop() sends SIGTERM to the group and SIGKILL after a bound, and whatever a test
// forgot is killed (and every temp dir removed) when the test process exits or is signalled.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { TestkitError, tail } from './errors.js';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  /** How it ended (code and signal null when it could not be spawned); undefined while it runs. */
  exitStatus(): ProcessExit | undefined;
  /** Resolves when the process ends by itself; rejects after `timeoutMs` (default 10 000). */
  waitForExit(timeoutMs?: number): Promise<ProcessExit>;
  /** stdout and stderr interleaved (the last 256 KiB). */
  output(): string;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM to the process group, SIGKILL after `stopTimeoutMs`; resolves once it has exited. */
  stop(): Promise<ProcessExit>;
}

export interface StartProcessOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** How long stop() waits after SIGTERM before SIGKILL. Default 5000 ms. */
  stopTimeoutMs?: number;
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCommandOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
  /** The command is killed and the call rejects after this long. Default 30 000 ms. */
  timeoutMs?: number;
}

export interface TempDir {
  readonly path: string;
  remove(): Promise<void>;
}

const OUTPUT_LIMIT = 256 * 1024;
const liveGroups = new Set<number>();
const liveDirs = new Set<string>();
let guardInstalled = false;

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  // kill(-0) would signal our own group: a process that never got a pid has nothing to stop.
  if (pgid <= 0) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the whole group is gone already.
  }
}

function cleanUpNow(): void {
  for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL');
  liveGroups.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installGuard(): void {
  if (guardInstalled) return;
  guardInstalled = true;
  process.on('exit', cleanUpNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanUpNow();
      // Listening replaced the default action (exit); restore it when nobody else handles the signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

// Debian keeps postfix, smtp-sink and haproxy in /usr/sbin, which a non-login PATH may lack.
function systemEnv(extra: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(dir)) dirs.push(dir);
  return { ...process.env, PATH: dirs.join(':'), ...extra };
}

function spawnTracked(command: string, args: readonly string[], options: RunCommandOptions, stdin: boolean) {
  installGuard();
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: systemEnv(options.env),
    // Own process group, so one kill reaches everything the program forks.
    detached: true,
    stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid ?? 0;
  if (pid > 0) liveGroups.add(pid);
  const exited = new Promise<ProcessExit & { error?: Error }>((resolve) => {
    child.once('exit', (code, signal) => {
      // The leader is gone; take whatever it left in its group with it while the id is still ours.
      signalGroup(pid, 'SIGKILL');
      liveGroups.delete(pid);
      resolve({ code, signal });
    });
    child.once('error', (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
  });
  return { child, pid, exited };
}

export function startProcess(
  name: string,
  command: string,
  args: readonly string[],
  options: StartProcessOptions = {},
): ManagedProcess {
  const { child, pid, exited } = spawnTracked(command, args, options, false);
  const stopTimeoutMs = options.stopTimeoutMs ?? 5000;
  let output = '';
  let exit: (ProcessExit & { error?: Error }) | undefined;
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const watcher of watchers) watcher();
  };
  const onData = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
    notify();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  // A forgotten server must not keep the test process alive; the exit guard kills it instead.
  child.unref();
  (child.stdout as unknown as net.Socket | null)?.unref();
  (child.stderr as unknown as net.Socket | null)?.unref();
  void exited.then((e) => {
    exit = e;
    notify();
  });

  const describe = () => `${name} (${command} ${args.join(' ')})`;

  const status = (e: ProcessExit) => ({ code: e.code, signal: e.signal });

  return {
    name,
    pid,
    exitStatus: () => (exit ? status(exit) : undefined),
    async waitForExit(timeoutMs = 10_000) {
      // The child is unref'd; a pending timer keeps the event loop (and this wait) alive.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new TestkitError('TESTKIT_TIMEOUT', `${describe()} still running after ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      try {
        return status(await Promise.race([exited, timeout]));
      } finally {
        clearTimeout(timer);
      }
    },
    output: () => output,
    waitForOutput(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match) {
            done();
            resolve(match);
          } else if (exit) {
            done();
            const why = exit.error
              ? new TestkitError('TESTKIT_SPAWN', `${describe()} could not start: ${exit.error.message}`)
              : new TestkitError(
                  'TESTKIT_EXITED',
                  `${describe()} exited (code ${exit.code}, signal ${exit.signal}) before printing ${pattern}:\n${tail(output)}`,
                );
            reject(why);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new TestkitError(
              'TESTKIT_TIMEOUT',
              `${describe()} did not print ${pattern} within ${timeoutMs} ms:\n${tail(output)}`,
            ),
          );
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          watchers.delete(check);
        };
        watchers.add(check);
        check();
      });
    },
    async stop() {
      if (!exit) {
        // Keep the event loop alive until the exit arrives, even after the SIGKILL timer has fired.
        child.ref();
        signalGroup(pid, 'SIGTERM');
        const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), stopTimeoutMs);
        await exited;
        clearTimeout(timer);
      }
      return status(await exited);
    },
  };
}

/** Runs a command to completion; rejects (after killing it) when it runs past `timeoutMs`. */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: RunCommandOptions = {},
): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const { child, pid, exited } = spawnTracked(command, args, options, options.input !== undefined);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  if (options.input !== undefined) {
    // EPIPE when the command exits without reading all of it is its business, not an error here.
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.input);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    signalGroup(pid, 'SIGKILL');
  }, timeoutMs);
  const exit = await exited;
  clearTimeout(timer);
  // The pipes may still hold the last bytes after 'exit'.
  await Promise.all([child.stdout, child.stderr].map((s) => (s && !s.closed ? waitClosed(s) : undefined)));
  const shown = `${command} ${args.join(' ')}`;
  if (exit.error) throw new TestkitError('TESTKIT_SPAWN', `${shown} could not start: ${exit.error.message}`);
  if (timedOut) {
    throw new TestkitError('TESTKIT_TIMEOUT', `${shown} ran past ${timeoutMs} ms:\n${tail(stdout + stderr)}`);
  }
  return { code: exit.code, signal: exit.signal, stdout, stderr };
}

/** ':\n' and the last lines of what a process printed, or '' when it printed nothing. */
function printed(p: ManagedProcess): string {
  const text = tail(p.output());
  return text ? `:\n${text}` : '';
}

function waitClosed(stream: Readable): Promise<void> {
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

export interface WaitForPortOptions {
  host?: string;
  timeoutMs?: number;
  /** Give up early, with its output, when this process ends while we wait. */
  process?: ManagedProcess;
}

/** Resolves once a TCP connection to host:port succeeds. */
export async function waitForPort(port: number, options: WaitForPortOptions = {}): Promise<void> {
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await canConnect(host, port)) return;
    const owner = options.process;
    const ended = owner?.exitStatus();
    if (owner && ended) {
      const { code, signal } = ended;
      throw new TestkitError(
        'TESTKIT_EXITED',
        `${owner.name} exited (code ${code}, signal ${signal}) before listening on ${host}:${port}${printed(owner)}`,
      );
    }
    if (Date.now() > deadline) {
      const seen = owner ? printed(owner) : '';
      throw new TestkitError(
        'TESTKIT_TIMEOUT',
        `nothing listened on ${host}:${port} within ${timeoutMs} ms${seen}`,
      );
    }
    await delay(50);
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(1000);
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
    socket.once('timeout', () => finish(false));
  });
}

/** Calls `probe` every `intervalMs` until it returns a value other than undefined. */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new TestkitError('TESTKIT_TIMEOUT', `${what}: not within ${timeoutMs} ms`);
    await delay(options.intervalMs ?? 50);
  }
}

/** A private directory under the system temp dir, removed by remove() or at process exit. */
export async function makeTempDir(prefix: string): Promise<TempDir> {
  installGuard();
  const dir = await mkdtemp(path.join(os.tmpdir(), `smtp-lb-${prefix}-`));
  liveDirs.add(dir);
  return {
    path: dir,
    async remove() {
      liveDirs.delete(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
