// A private rspamd (Debian's, 3.4) on free loopback ports: a normal worker (HTTP /checkv2), a proxy
// worker in milter mode that has the normal worker scan (the usual deployment), and a controller (/history), with its own config,
// database, run and log directories, in the foreground. Nothing reaches the network: modules that
// look things up (RBLs, SPF, DKIM, fuzzy, maps.rspamd.com, updates) are off, DNS points at a closed
// port, and the TLD list is a five-line file so start-up takes seconds, not a minute.
//
// Verdicts come from rspamd's own rules: its GTUBE test patterns (`enable_test_patterns`) give reject,
// add header and rewrite subject; rspamd 3.4 has no soft-reject pattern, so a force_actions rule maps
// the Subject `SMTP-LB-TEST-SOFT-REJECT` to `soft reject`. A Lua rule writes every task's envelope
// (IP, HELO, hostname, sender, recipients, user, queue id) to the log for tests to read back.
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
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

/** rspamd's GTUBE test patterns (src/libmime/message.c), active with `enable_test_patterns`. */
export const RSPAMD_GTUBE = {
  reject: 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
  addHeader: 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
  rewriteSubject: 'ZJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
  noAction: 'AJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X',
} as const;

/** A Subject containing this is soft-rejected by the private instance's force_actions rule. */
export const RSPAMD_SOFT_REJECT_SUBJECT = 'SMTP-LB-TEST-SOFT-REJECT';
export const RSPAMD_SOFT_REJECT_MESSAGE = 'Try again later (smtp-lb soft-reject test pattern)';

/** One task's envelope as the private instance logged it. */
export interface RspamdEnvelope {
  ip: string;
  helo: string;
  hostname: string;
  from: string;
  rcpt: string[];
  user: string;
  queueId: string;
}

export interface RspamdOptions {
  /** Longest wait for all three workers. Default 60 000 ms (the machine may be loaded). */
  startTimeoutMs?: number;
  /** Worker `task_timeout`. Default 8s (rspamd's). */
  taskTimeout?: string;
  /** Options `max_message`: the largest message rspamd scans. Default 50Mb (rspamd's). */
  maxMessage?: string;
}

export interface RspamdInstance {
  readonly host: string;
  /** The normal worker: `http://127.0.0.1:<port>` (POST /checkv2). */
  readonly url: string;
  readonly normalPort: number;
  /** The proxy worker in milter mode. */
  readonly milterPort: number;
  readonly milterAddress: string;
  readonly controllerPort: number;
  readonly dir: string;
  readonly logFile: string;
  log(): Promise<string>;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Every task's envelope logged so far, in order. */
  envelopes(): Promise<RspamdEnvelope[]>;
  /** SIGSTOP / SIGCONT to every rspamd process: sockets accept, nothing answers. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

// Modules that would look something up on the network or need Redis; none is needed for verdicts
// from rspamd's own content rules.
const DISABLED_MODULES = [
  'antivirus',
  'arc',
  'asn',
  'bimi',
  'clickhouse',
  'dcc',
  'dkim',
  'dkim_signing',
  'dmarc',
  'elastic',
  'emails',
  'external_services',
  'fuzzy_check',
  'greylist',
  'hfilter',
  'history_redis',
  'metadata_exporter',
  'multimap',
  'mx_check',
  'neural',
  'p0f',
  'phishing',
  'ratelimit',
  'rbl',
  'replies',
  'reputation',
  'rspamd_update',
  'spamassassin',
  'spf',
  'url_redirector',
  'whitelist',
];

const ENVELOPE_LUA = `-- smtp-lb testkit: the envelope of every task, for tests to read back from the log.
local rspamd_logger = require "rspamd_logger"
local function addrs(list)
  local out = {}
  for _, a in ipairs(list or {}) do out[#out + 1] = a.addr or '' end
  return table.concat(out, ',')
end
rspamd_config:register_symbol({
  name = 'SMTP_LB_ENVELOPE',
  score = 0.0,
  callback = function(task)
    local ip = task:get_from_ip()
    rspamd_logger.infox(task, 'smtp-lb-envelope ip=<%s> helo=<%s> hostname=<%s> from=<%s> rcpt=<%s> user=<%s> qid=<%s>',
      ip and ip:is_valid() and tostring(ip) or '', task:get_helo() or '', task:get_hostname() or '',
      addrs(task:get_from('smtp')), addrs(task:get_recipients('smtp')), task:get_user() or '',
      task:get_queue_id() or '')
  end,
})
`;

// Included with priority over the packaged options.inc (a plain duplicate key would lose to it).
function options(dir: string, taskTimeout: string, maxMessage: string) {
  return `enable_test_patterns = true;
max_message = ${maxMessage};
disable_hyperscan = true;
url_tld = "${dir}/tld.dat";
task_timeout = ${taskTimeout};
dns { nameserver = ["127.0.0.1:9"]; timeout = 0.1s; retransmits = 1; }
`;
}

function config(ports: { normal: number; milter: number; controller: number }) {
  return `# smtp-lb testkit: a private rspamd; see packages/testkit/src/rspamd.ts
.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
  type = "file";
  filename = "$LOGDIR/rspamd.log";
  level = "info";
}
worker "normal" {
  bind_socket = "${HOST}:${ports.normal}";
  .include "$CONFDIR/worker-normal.inc"
  count = 1;
}
worker "rspamd_proxy" {
  bind_socket = "${HOST}:${ports.milter}";
  milter = yes;
  timeout = 120s;
  upstream "local" { default = yes; hosts = "${HOST}:${ports.normal}"; }
  count = 1;
  max_retries = 5;
  discard_on_reject = false;
  quarantine_on_reject = false;
  spam_header = "X-Spam";
  reject_message = "Spam message rejected";
}
worker "controller" {
  bind_socket = "${HOST}:${ports.controller}";
  .include "$CONFDIR/worker-controller.inc"
  count = 1;
}
`;
}

const REGEXP_CONF = `SMTP_LB_TEST_SOFT_REJECT {
  re = "Subject=/${RSPAMD_SOFT_REJECT_SUBJECT}/H";
  score = 0.0;
  description = "smtp-lb testkit soft-reject pattern";
}
`;

const FORCE_ACTIONS_CONF = `rules {
  SMTP_LB_TEST_SOFT_REJECT {
    action = "soft reject";
    expression = "SMTP_LB_TEST_SOFT_REJECT";
    message = "${RSPAMD_SOFT_REJECT_MESSAGE}";
  }
}
`;

async function rspamdUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const r = await runCommand('id', ['_rspamd'], { timeoutMs: 5000 });
  const uid = /uid=(\d+)/.exec(r.stdout)?.[1];
  const gid = /gid=(\d+)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || !uid || !gid) {
    throw new TestkitError('TESTKIT_COMMAND', `no _rspamd user (is rspamd installed?): ${r.stderr}`);
  }
  return { uid: Number(uid), gid: Number(gid) };
}

const ENVELOPE_LINE =
  /smtp-lb-envelope ip=<([^>]*)> helo=<([^>]*)> hostname=<([^>]*)> from=<([^>]*)> rcpt=<([^>]*)> user=<([^>]*)> qid=<([^>]*)>/g;

export function parseRspamdEnvelopes(log: string): RspamdEnvelope[] {
  const out: RspamdEnvelope[] = [];
  for (const m of log.matchAll(ENVELOPE_LINE)) {
    out.push({
      ip: m[1]!,
      helo: m[2]!,
      hostname: m[3]!,
      from: m[4]!,
      rcpt: m[5] === '' ? [] : m[5]!.split(','),
      user: m[6]!,
      queueId: m[7]!,
    });
  }
  return out;
}

async function ping(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://${HOST}:${port}/ping`, { signal: AbortSignal.timeout(2000) });
    return res.ok && (await res.text()).includes('pong');
  } catch {
    return false;
  }
}

export async function startRspamd(opts: RspamdOptions = {}): Promise<RspamdInstance> {
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const ports = {
    normal: await freePort(HOST),
    milter: await freePort(HOST),
    controller: await freePort(HOST),
  };
  const dir = await makeTempDir('rspamd');
  const sub = (name: string) => path.join(dir.path, name);
  const logFile = path.join(sub('log'), 'rspamd.log');
  let proc: ManagedProcess | undefined;
  try {
    for (const d of ['local.d', 'db', 'run', 'log']) await mkdir(sub(d));
    await writeFile(sub('tld.dat'), 'com\norg\nnet\ntest\nexample\n');
    await writeFile(sub('rspamd.conf'), config(ports));
    await writeFile(
      path.join(sub('local.d'), 'options.inc'),
      options(dir.path, opts.taskTimeout ?? '8s', opts.maxMessage ?? '50Mb'),
    );
    for (const m of DISABLED_MODULES)
      await writeFile(path.join(sub('local.d'), `${m}.conf`), 'enabled = false;\n');
    await writeFile(path.join(sub('local.d'), 'regexp.conf'), REGEXP_CONF);
    await writeFile(path.join(sub('local.d'), 'force_actions.conf'), FORCE_ACTIONS_CONF);
    await writeFile(sub('rspamd.local.lua'), ENVELOPE_LUA);
    const user = await rspamdUser();
    if (user) {
      // The workers drop to _rspamd: they must reach the (0700) temp dir and write db, run and log.
      await chmod(dir.path, 0o711);
      for (const d of ['db', 'run', 'log']) await chown(sub(d), user.uid, user.gid);
    }
    const args = [
      '-f',
      '-c',
      sub('rspamd.conf'),
      `--var=LOCAL_CONFDIR=${dir.path}`,
      `--var=DBDIR=${sub('db')}`,
      `--var=RUNDIR=${sub('run')}`,
      `--var=LOGDIR=${sub('log')}`,
    ];
    if (user) args.push('-u', '_rspamd', '-g', '_rspamd');
    proc = startProcess('rspamd', 'rspamd', args);
    const p = proc;
    const started = performance.now();
    for (const port of [ports.normal, ports.milter, ports.controller])
      await waitForPort(port, { host: HOST, process: p, timeoutMs: startTimeoutMs });
    const left = Math.max(1000, startTimeoutMs - (performance.now() - started));
    await pollUntil(
      'rspamd workers answering /ping',
      async () => {
        if (p.exitStatus()) {
          const log = await readFile(logFile, 'utf8').catch(() => '');
          throw new TestkitError(
            'TESTKIT_EXITED',
            `rspamd exited while starting:\n${tail(p.output() + log)}`,
          );
        }
        return (await ping(ports.normal)) && (await ping(ports.controller)) ? true : undefined;
      },
      { timeoutMs: left, intervalMs: 100 },
    );
  } catch (err) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    await proc?.stop();
    await dir.remove();
    if (err instanceof TestkitError && err.code === 'TESTKIT_EXITED') throw err;
    throw new TestkitError(
      'TESTKIT_TIMEOUT',
      `rspamd did not start: ${(err as Error).message}\n${tail(log)}`,
    );
  }
  const p = proc;
  const log = () => readFile(logFile, 'utf8').catch(() => '');
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-p.pid, s);
    } catch {
      // the group is gone
    }
  };
  return {
    host: HOST,
    url: `http://${HOST}:${ports.normal}`,
    normalPort: ports.normal,
    milterPort: ports.milter,
    milterAddress: `${HOST}:${ports.milter}`,
    controllerPort: ports.controller,
    dir: dir.path,
    logFile,
    log,
    waitForLog: (pattern, timeoutMs = 10_000) =>
      pollUntil(`rspamd log line ${pattern}`, async () => (await log()).match(pattern) ?? undefined, {
        timeoutMs,
        intervalMs: 50,
      }),
    envelopes: async () => parseRspamdEnvelopes(await log()),
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    async stop() {
      signal('SIGCONT');
      await p.stop();
      await dir.remove();
    },
  };
}
