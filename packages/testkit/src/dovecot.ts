// A private Dovecot that only authenticates (no IMAP/POP3): a passwd-file of test users and one auth
// socket at `socketPath`, which a private Postfix uses for SASL (smtpd_sasl_type = dovecot). Its own
// base, state and log under a temp dir; runs in the foreground (-F) and is stopped with its group.
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { TestkitError, tail } from './errors.js';
import { type ManagedProcess, makeTempDir, pollUntil, startProcess } from './process.js';

export interface DovecotOptions {
  /** user -> password (stored as {PLAIN}; these are test users). */
  users: Record<string, string>;
  /** Where the auth socket goes (e.g. inside a Postfix queue's private/ dir). */
  socketPath: string;
  /** Default 10 000 ms. */
  startTimeoutMs?: number;
}

export interface DovecotInstance {
  readonly socketPath: string;
  /** Dovecot's own log so far. */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export async function startDovecot(options: DovecotOptions): Promise<DovecotInstance> {
  const tmp = await makeTempDir('dovecot');
  const root = tmp.path;
  await chmod(root, 0o755);
  const logFile = path.join(root, 'dovecot.log');
  const users = path.join(root, 'users');
  for (const name of Object.keys(options.users)) {
    if (/[:\s]/.test(name))
      throw new TestkitError('TESTKIT_OPTION', `bad test user name ${JSON.stringify(name)}`);
  }
  await writeFile(
    users,
    Object.entries(options.users)
      .map(([u, p]) => `${u}:{PLAIN}${p}\n`)
      .join(''),
    { mode: 0o644 },
  );
  await mkdir(path.join(root, 'run'));
  await mkdir(path.join(root, 'state'));
  const conf = path.join(root, 'dovecot.conf');
  await writeFile(
    conf,
    `base_dir = ${root}/run
state_dir = ${root}/state
log_path = ${logFile}
instance_name = smtp-lb-test-${path.basename(root)}
protocols =
ssl = no
auth_mechanisms = plain login
disable_plaintext_auth = no
# Tests try wrong passwords on purpose; Dovecot's 2 s penalty would only slow them down.
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${users}
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener ${options.socketPath} {
    mode = 0666
  }
}
`,
    { mode: 0o644 },
  );
  let proc: ManagedProcess | undefined;
  const log = async () => readFile(logFile, 'utf8').catch(() => '');
  const stop = async () => {
    await proc?.stop();
    await tmp.remove();
  };
  try {
    proc = startProcess('dovecot', 'dovecot', ['-F', '-c', conf]);
    await pollUntil(
      'dovecot auth socket',
      async () => {
        if (proc?.exitStatus())
          throw new TestkitError('TESTKIT_EXITED', `dovecot exited: ${tail(proc.output())}`);
        return access(options.socketPath).then(
          () => true,
          () => undefined,
        );
      },
      { timeoutMs: options.startTimeoutMs ?? 10_000 },
    );
  } catch (err) {
    const said = `${proc?.output() ?? ''}${await log()}`;
    await stop();
    const code = err instanceof TestkitError ? err.code : 'TESTKIT_EXITED';
    throw new TestkitError(code, `dovecot did not start: ${(err as Error).message}\n${tail(said)}`, {
      cause: err,
    });
  }
  return { socketPath: options.socketPath, log, stop };
}
