// A private postgrey (Debian's greylisting policy server, Postfix policy delegation protocol) on a
// free loopback port with its own database directory, an empty whitelist and no auto-whitelisting,
// so a test sees exactly: first attempt deferred, a retry after `delay` seconds accepted.
import { chmod, chown, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { TestkitError } from './errors.js';
import { freePort } from './free-port.js';
import { type ManagedProcess, makeTempDir, runCommand, startProcess, waitForPort } from './process.js';

const HOST = '127.0.0.1';

export interface PostgreyOptions {
  /** Seconds a triplet is greylisted. Default 2. */
  delay?: number;
  /** Default: a free port. */
  port?: number;
}

export interface Postgrey {
  readonly host: string;
  readonly port: number;
  /** host:port */
  readonly address: string;
  readonly dbDir: string;
  output(): string;
  stop(): Promise<void>;
}

async function postgreyUser(): Promise<{ uid: number; gid: number }> {
  const r = await runCommand('id', ['postgrey'], { timeoutMs: 5000 });
  const uid = /uid=(\d+)/.exec(r.stdout)?.[1];
  const gid = /gid=(\d+)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || !uid || !gid) {
    throw new TestkitError('TESTKIT_COMMAND', `no postgrey user (is postgrey installed?): ${r.stderr}`);
  }
  return { uid: Number(uid), gid: Number(gid) };
}

export async function startPostgrey(options: PostgreyOptions = {}): Promise<Postgrey> {
  const port = options.port ?? (await freePort(HOST));
  const dir = await makeTempDir('postgrey');
  let proc: ManagedProcess | undefined;
  try {
    const db = path.join(dir.path, 'db');
    const empty = path.join(dir.path, 'empty');
    await writeFile(empty, '');
    await runCommand('mkdir', ['-p', db]);
    if (process.getuid?.() === 0) {
      // postgrey drops to its own user: it must reach the (0700) temp dir and own its database.
      const { uid, gid } = await postgreyUser();
      await chmod(dir.path, 0o711);
      await chown(db, uid, gid);
    }
    proc = startProcess('postgrey', 'postgrey', [
      `--inet=${HOST}:${port}`,
      `--dbdir=${db}`,
      `--delay=${options.delay ?? 2}`,
      '--auto-whitelist-clients=0',
      `--whitelist-clients=${empty}`,
      `--whitelist-recipients=${empty}`,
      '--verbose',
    ]);
    await waitForPort(port, { host: HOST, process: proc, timeoutMs: 15_000 });
  } catch (err) {
    await proc?.stop();
    await dir.remove();
    throw err;
  }
  const p = proc;
  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    dbDir: dir.path,
    output: () => p.output(),
    async stop() {
      await p.stop();
      await dir.remove();
    },
  };
}
