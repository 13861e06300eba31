// Starts an smtp-lb node in the test process from a YAML text (the real config loader), with its
// JSON log lines captured so tests can assert what an operator would read.
import { Writable } from 'node:stream';
import { parseConfig, type SmtpLbConfig } from '@smtp-lb/config';
import { createLogger, SmtpLbNode } from '@smtp-lb/proxy';

export interface TestNode {
  node: SmtpLbNode;
  port: number;
  config: SmtpLbConfig;
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export function configFrom(yaml: string, env: Record<string, string> = {}): SmtpLbConfig {
  const res = parseConfig(yaml, { env: { ...process.env, ...env }, source: 'test.yaml' });
  if (!res.ok)
    throw new Error(`bad test config:\n${res.errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`);
  return res.config;
}

export async function startNode(yaml: string, env: Record<string, string> = {}): Promise<TestNode> {
  const config = configFrom(yaml, env);
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  const node = await SmtpLbNode.start(config, { logger: createLogger(config.log.level, sink) });
  const port = node.addresses.values().next().value!.port;
  return { node, port, config, logs, stop: () => node.stop() };
}

/** A node whose one listener feeds pool `mta`, made of the Consul service `service`. */
export function consulConfig(o: {
  id: string;
  service: string;
  consul: string;
  policy?: string;
  extraTop?: string;
}): string {
  return `
node: { id: ${o.id} }
listeners:
  - { name: inbound, listen: 127.0.0.1:0, hostname: mx.test, pool: mta }
pools:
  mta:
    consul: { service: ${o.service} }
    tls: none
${o.policy ? `balancing: { policy: ${o.policy} }` : ''}
consul: { address: ${o.consul} }
log: { level: info }
admin: { listen: 127.0.0.1:0 }
${o.extraTop ?? ''}
`;
}

/** A one-listener, one-pool config on a free port in front of the given backend addresses. */
export type BackendEntry = string | { address: string; maxConnections?: number; weight?: number };

export function simpleConfig(
  backends: BackendEntry[],
  opts: { extraPool?: string; extraListener?: string; extraTop?: string } = {},
): string {
  return `
node: { id: test-node }
listeners:
  - name: inbound
    listen: 127.0.0.1:0
    hostname: mx.test
    pool: default
${opts.extraListener ?? ''}
pools:
  default:
    static:
${backends.map((b) => `      - ${JSON.stringify(typeof b === 'string' ? { address: b } : b)}`).join('\n')}
    tls: none
${opts.extraPool ?? ''}
log: { level: debug }
admin: { listen: 127.0.0.1:0 }
${opts.extraTop ?? ''}
`;
}
