// A private Postfix instance as a test backend: its own config, queue and data directories under a
// temp dir, one smtpd on 127.0.0.1:<free port>, a log file the test can read, XCLIENT allowed from
// 127.0.0.1. Mail is relayed to `relayTo` (a capture backend, smtp-sink) or else discarded.
import { chmod, chown, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type DovecotInstance, startDovecot } from './dovecot.js';
import { TestkitError, tail } from './errors.js';
import { freePort } from './free-port.js';
import {
  type ManagedProcess,
  makeTempDir,
  pollUntil,
  runCommand,
  startProcess,
  waitForPort,
} from './process.js';

const HOST = '127.0.0.1';

export interface PostfixOptions {
  /** smtpd_authorized_xclient_hosts. Default 127.0.0.1. */
  xclientHosts?: string;
  /** 'host:port' ('[::1]:port' for IPv6): every message is relayed there by SMTP. Absent: discarded. */
  relayTo?: string;
  /** myhostname, shown in the greeting and EHLO reply. Default postfix-<port>.test. */
  hostname?: string;
  /**
   * SASL users (user -> password): a private Dovecot authenticates them through an auth socket in
   * this instance's queue (smtpd_sasl_type = dovecot), AUTH PLAIN/LOGIN offered without TLS, and
   * authenticated clients may relay (permit_sasl_authenticated). The log then shows
   * `sasl_username=<user>` for their messages, also for a user announced by XCLIENT LOGIN=.
   */
  saslUsers?: Record<string, string>;
  /** More main.cf parameters; they win over the defaults here (e.g. smtpd_recipient_restrictions). */
  mainCf?: Record<string, string>;
  /** Default 15 000 ms. */
  startTimeoutMs?: number;
}

export interface PostfixInstance {
  readonly host: string;
  readonly port: number;
  /** host:port of the smtpd. */
  readonly address: string;
  readonly hostname: string;
  /** The instance's root temp dir; configDir, queueDir and logFile are inside it. */
  readonly dir: string;
  readonly configDir: string;
  readonly queueDir: string;
  readonly logFile: string;
  /** The whole maillog so far ('' before the first line). */
  log(): Promise<string>;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Queue ids of the messages smtpd accepted, in log order. */
  queueIds(): Promise<string[]>;
  /** `postqueue -f`: retry deferred mail now instead of at the next queue run. */
  flush(): Promise<void>;
  /** Stops master and every Postfix process of this instance, then removes its directories. */
  stop(): Promise<void>;
}

interface Ids {
  daemonDirectory: string;
  postfixUid: number;
  postdropGid: number;
}

let idsCache: Promise<Ids> | undefined;

function systemIds(): Promise<Ids> {
  idsCache ??= (async () => {
    const ask = async (cmd: string, args: string[]) => {
      const r = await runCommand(cmd, args, { timeoutMs: 10_000 });
      if (r.code !== 0) {
        throw new TestkitError(
          'TESTKIT_COMMAND',
          `${cmd} ${args.join(' ')} failed (is Postfix installed?): ${r.stderr}`,
        );
      }
      return r.stdout.trim();
    };
    const [daemonDirectory, uid, group] = await Promise.all([
      ask('postconf', ['-dh', 'daemon_directory']),
      ask('id', ['-u', 'postfix']),
      ask('getent', ['group', 'postdrop']),
    ]);
    return { daemonDirectory, postfixUid: Number(uid), postdropGid: Number(group.split(':')[2]) };
  })();
  return idsCache;
}

function nextHop(relayTo: string): { hop: string; ipv6: boolean } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(relayTo);
  if (!m)
    throw new TestkitError('TESTKIT_OPTION', `relayTo must be host:port or [ipv6]:port, got ${relayTo}`);
  const host = (m[1] ?? m[2]) as string;
  const ipv6 = host.includes(':');
  return { hop: ipv6 ? `[ipv6:${host}]:${m[3]}` : `[${host}]:${m[3]}`, ipv6 };
}

function mainCf(root: string, hostname: string, options: PostfixOptions): string {
  const relay = options.relayTo ? nextHop(options.relayTo) : undefined;
  const params: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: path.join(root, 'queue'),
    data_directory: path.join(root, 'data'),
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    myhostname: hostname,
    mydomain: 'test',
    myorigin: '$myhostname',
    mydestination: '',
    inet_interfaces: HOST,
    inet_protocols: relay?.ipv6 ? 'all' : 'ipv4',
    mynetworks: '127.0.0.0/8',
    // Every domain is a relay domain, so a client announced by XCLIENT from outside mynetworks is
    // still accepted: the instance stands in for a backend MTA that takes mail for anyone.
    relay_domains: 'static:all',
    relay_recipient_maps: '',
    smtpd_relay_restrictions: 'permit_mynetworks, permit_auth_destination, reject',
    smtpd_authorized_xclient_hosts: options.xclientHosts ?? HOST,
    // No DNS in tests: no reverse lookups of clients (logged as unknown[addr]), no MX lookups.
    smtpd_peername_lookup: 'no',
    smtp_dns_support_level: 'disabled',
    smtp_host_lookup: 'native',
    default_transport: relay ? `smtp:${relay.hop}` : 'discard',
    relay_transport: relay ? `relay:${relay.hop}` : 'discard',
    // A relay target that was down gets the mail within seconds of coming back, not minutes.
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    smtp_connect_timeout: '5s',
    maillog_file: path.join(root, 'maillog'),
    // postlogd writes only below these prefixes (default /var); allow this instance's dir.
    maillog_file_prefixes: root,
    alias_maps: '',
    alias_database: '',
    local_recipient_maps: '',
    notify_classes: '',
    biff: 'no',
    ...(options.saslUsers
      ? {
          smtpd_sasl_auth_enable: 'yes',
          smtpd_sasl_type: 'dovecot',
          smtpd_sasl_path: 'private/auth',
          smtpd_tls_auth_only: 'no',
          smtpd_relay_restrictions:
            'permit_sasl_authenticated, permit_mynetworks, permit_auth_destination, reject',
        }
      : {}),
    ...options.mainCf,
  };
  return `${Object.entries(params)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n')}\n`;
}

// Only the services this instance uses; chroot off (column 5) because the queue dir holds no /etc.
// The smtpd listener comes last: once its port accepts, every service before it exists.
function masterCf(port: number): string {
  const services = [
    'pickup    unix  n  -  n  60     1  pickup',
    'cleanup   unix  n  -  n  -      0  cleanup',
    'qmgr      unix  n  -  n  300    1  qmgr',
    'tlsmgr    unix  -  -  n  1000?  1  tlsmgr',
    'rewrite   unix  -  -  n  -      -  trivial-rewrite',
    'bounce    unix  -  -  n  -      0  bounce',
    'defer     unix  -  -  n  -      0  bounce',
    'trace     unix  -  -  n  -      0  bounce',
    'verify    unix  -  -  n  -      1  verify',
    'flush     unix  n  -  n  1000?  0  flush',
    'proxymap  unix  -  -  n  -      -  proxymap',
    'smtp      unix  -  -  n  -      -  smtp',
    'relay     unix  -  -  n  -      -  smtp',
    'showq     unix  n  -  n  -      -  showq',
    'error     unix  -  -  n  -      -  error',
    'retry     unix  -  -  n  -      -  error',
    'discard   unix  -  -  n  -      -  discard',
    'anvil     unix  -  -  n  -      1  anvil',
    'scache    unix  -  -  n  -      1  scache',
    'postlog   unix-dgram n  -  n  -  1  postlogd',
    `${HOST}:${port} inet  n  -  n  -  -  smtpd`,
  ];
  return `${services.join('\n')}\n`;
}

// The queue layout of postfix-files, made directly: `postfix check` makes the same in ~2.5 s of
// shell, while this takes milliseconds. The testkit's own test runs `postfix check` against it.
async function makeQueue(queueDir: string, ids: Ids): Promise<void> {
  const dirs: [string, number, number, number][] = [
    ['pid', 0, 0, 0o755],
    ['maildrop', ids.postfixUid, ids.postdropGid, 0o730],
    ['public', ids.postfixUid, ids.postdropGid, 0o710],
  ];
  const privateDirs = ['active', 'bounce', 'corrupt', 'defer', 'deferred', 'flush', 'hold', 'incoming'];
  for (const name of [...privateDirs, 'private', 'saved', 'trace'])
    dirs.push([name, ids.postfixUid, 0, 0o700]);
  await mkdir(queueDir, { mode: 0o755 });
  for (const [name, uid, gid, mode] of dirs) {
    const dir = path.join(queueDir, name);
    await mkdir(dir);
    await chown(dir, uid, gid);
    await chmod(dir, mode);
  }
}

export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  if (process.getuid?.() !== 0) {
    throw new TestkitError(
      'TESTKIT_OPTION',
      'a private Postfix instance needs root (master binds and drops privileges)',
    );
  }
  const ids = await systemIds();
  const port = await freePort(HOST);
  const hostname = options.hostname ?? `postfix-${port}.test`;
  const tmp = await makeTempDir('postfix');
  const root = tmp.path;
  const configDir = path.join(root, 'etc');
  const queueDir = path.join(root, 'queue');
  const dataDir = path.join(root, 'data');
  const logFile = path.join(root, 'maillog');
  let master: ManagedProcess | undefined;
  let dovecot: DovecotInstance | undefined;

  const log = async () => {
    try {
      return await readFile(logFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  };
  const waitForLog = async (pattern: RegExp, timeoutMs = 10_000) => {
    try {
      return await pollUntil(
        `postfix log line ${pattern}`,
        async () => (await log()).match(pattern) ?? undefined,
        {
          timeoutMs,
        },
      );
    } catch (err) {
      if (err instanceof TestkitError && err.code === 'TESTKIT_TIMEOUT') {
        throw new TestkitError('TESTKIT_TIMEOUT', `${err.message}; log so far:\n${tail(await log())}`);
      }
      throw err;
    }
  };
  const stop = async () => {
    await master?.stop();
    await dovecot?.stop();
    await tmp.remove();
  };

  try {
    // Postfix daemons run as the postfix user and chdir into the queue: the path must be searchable.
    await chmod(root, 0o755);
    await mkdir(configDir, { mode: 0o755 });
    const files: [string, string][] = [
      ['main.cf', mainCf(root, hostname, options)],
      ['master.cf', masterCf(port)],
    ];
    for (const [name, text] of files) {
      const file = path.join(configDir, name);
      await writeFile(file, text, { mode: 0o644 });
      // Postfix reads a config file only once it is about 2 s old, napping 300 ms at a time to
      // "let it cool down"; a back-dated file is read at once (start-up: ~2 s down to ~0.1 s).
      const past = new Date(Date.now() - 60_000);
      await utimes(file, past, past);
    }
    await makeQueue(queueDir, ids);
    if (options.saslUsers) {
      dovecot = await startDovecot({
        users: options.saslUsers,
        socketPath: path.join(queueDir, 'private', 'auth'),
      });
    }
    await mkdir(dataDir, { mode: 0o700 });
    await chown(dataDir, ids.postfixUid, 0);
    // master itself, in the foreground (no -w; -s keeps stdout/stderr open; -i would need PID 1).
    // It leads its own session, so signalling its process group reaches every process it forked.
    master = startProcess(
      'postfix master',
      path.join(ids.daemonDirectory, 'master'),
      ['-c', configDir, '-s'],
      {
        env: { MAIL_CONFIG: configDir },
      },
    );
    const timeoutMs = options.startTimeoutMs ?? 15_000;
    await waitForPort(port, { host: HOST, timeoutMs, process: master });
    await waitForLog(/postfix\/master\[\d+\]: daemon started/, timeoutMs);
  } catch (err) {
    let detail = '';
    if (err instanceof TestkitError && err.code === 'TESTKIT_EXITED') {
      // master reports early failures (bad directory, bad parameter) only to syslog, which tests
      // do not have; `postfix check` says the same thing on stderr or in the maillog file.
      const check = await runCommand('postfix', ['-c', configDir, 'check'], { timeoutMs: 20_000 }).catch(
        () => undefined,
      );
      const said = check ? tail(check.stdout + check.stderr) : '';
      if (said) detail += `\npostfix check says:\n${said}`;
    }
    const seen = await log();
    if (seen) detail += `\npostfix log:\n${tail(seen)}`;
    await stop();
    if (err instanceof TestkitError && detail) {
      throw new TestkitError(err.code, `${err.message}${detail}`, { cause: err });
    }
    throw err;
  }

  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    hostname,
    dir: root,
    configDir,
    queueDir,
    logFile,
    log,
    waitForLog,
    async queueIds() {
      return [...(await log()).matchAll(/postfix\/smtpd\[\d+\]: ([0-9A-Za-z]+): client=/g)].map(
        (m) => m[1] as string,
      );
    },
    async flush() {
      const r = await runCommand('postqueue', ['-c', configDir, '-f'], { timeoutMs: 10_000 });
      if (r.code !== 0)
        throw new TestkitError('TESTKIT_COMMAND', `postqueue -f failed: ${r.stdout}${r.stderr}`);
    },
    stop,
  };
}
