// What the unit tests of the proxy's parts share: a config from YAML (every error shown when it is
// not valid) and the parts the node itself builds from it, made as node.ts makes them.
import assert from 'node:assert/strict';
import { parseConfig, type SmtpLbConfig } from '@smtp-lb/config';
import { type ClientLimits, MemorySuspensions } from '@smtp-lb/ledger';
import { SenderPolicy } from '../src/auth/sender-policy.js';
import { createLogger } from '../src/logger.js';
import type { Metrics } from '../src/metrics.js';

export const silent = createLogger('silent');

export function configOf(yaml: string): SmtpLbConfig {
  const parsed = parseConfig(yaml);
  assert.ok(parsed.ok, JSON.stringify(!parsed.ok && parsed.errors));
  return parsed.config;
}

/** One listener `in` (hostname mx.test, pool p) and `shaping:` lines as given. */
export function shapingConfig(shaping: string, listenerExtra = ''): SmtpLbConfig {
  return configOf(`
listeners:
  - name: in
    listen: 127.0.0.1:0
    hostname: mx.test
    pool: p
${listenerExtra}
pools: { p: { static: [{ address: 127.0.0.1:1 }] } }
shaping:
${shaping}
`);
}

/** The sender rules of `config` on in-memory suspensions. */
export function senderPolicy(config: SmtpLbConfig, limits: ClientLimits, metrics: Metrics): SenderPolicy {
  return new SenderPolicy({
    config: () => config.senders,
    limits,
    suspensions: new MemorySuspensions(),
    metrics,
    nodeId: 'n1',
    log: silent,
  });
}
