#!/usr/bin/env node
// The `smtp-lb` command: run a node (`--config FILE` or SMTP_LB_CONFIG), or `check-config FILE`.
// Start-up fails fast with every config error listed by path, exit 1.
import { formatErrors, loadConfig, runCheckConfig } from '@smtp-lb/config';
import { createLogger } from './logger.js';
import { SmtpLbNode } from './node.js';
import { runSenders } from './senders-command.js';
import { runStatus } from './status-command.js';

const USAGE = `usage:
  smtp-lb --config FILE          run a node (or SMTP_LB_CONFIG=FILE smtp-lb)
  smtp-lb check-config FILE      validate FILE, print every error with its path, exit 1 if any
  smtp-lb status [--admin URL]   a node's pools and backends (default http://127.0.0.1:9090)
  smtp-lb senders [list] | lift USER [--admin URL] [--token T]
                                 suspended senders (cluster-wide), or lift one

signals: SIGTERM drains (finish transactions, then exit 0), SIGHUP reloads FILE, SIGINT stops now.
`;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'check-config') return runCheckConfig(argv.slice(1), process.stdout, process.stderr);
  if (argv[0] === 'status') return runStatus(argv.slice(1), process.stdout, process.stderr);
  if (argv[0] === 'senders') return runSenders(argv.slice(1), process.stdout, process.stderr);
  if (argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  let path = process.env.SMTP_LB_CONFIG;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') path = argv[++i];
    else if (a.startsWith('--config=')) path = a.slice('--config='.length);
    else {
      process.stderr.write(`smtp-lb: unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (!path) {
    process.stderr.write(`smtp-lb: no configuration given\n${USAGE}`);
    return 2;
  }
  const loaded = loadConfig(path);
  if (!loaded.ok) {
    process.stderr.write(`smtp-lb: ${path} is not a valid configuration:\n${formatErrors(loaded.errors)}`);
    return 1;
  }
  const log = createLogger(loaded.config.log.level);
  const node = await SmtpLbNode.start(loaded.config, { logger: log });
  process.on('SIGTERM', () => {
    node.drain().then(
      () => process.exit(0),
      (err: unknown) => {
        node.log.error({ err }, 'drain failed');
        process.exit(1);
      },
    );
  });
  process.on('SIGINT', () => {
    node.stop().finally(() => process.exit(0));
  });
  process.on('SIGHUP', () => {
    const next = loadConfig(path);
    if (!next.ok) {
      node.log.error(
        { errors: next.errors },
        'reload refused: the new configuration is invalid; keeping the old one',
      );
      return;
    }
    node.reload(next.config).catch((err: unknown) => node.log.error({ err }, 'reload failed'));
  });
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`smtp-lb: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
