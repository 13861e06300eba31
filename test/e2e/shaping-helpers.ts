// Shared by the shaping tests: a node config with a `shaping` section (and optional listener
// extras and Redis), waiting for a log line, reading a metric as an operator would, and timing.
import { startNode, type TestNode } from '../helpers/node.js';

export interface ShapingNodeOptions {
  nodeId?: string;
  backend: string;
  /** YAML lines under `shaping:` (indented by the caller with two spaces). */
  shaping?: string;
  /** YAML lines under the listener (four spaces). */
  listener?: string;
  redis?: string;
  keyPrefix?: string;
}

export function shapingYaml(o: ShapingNodeOptions): string {
  return `
node: { id: ${o.nodeId ?? 'shaping-node'} }
listeners:
  - name: inbound
    listen: 127.0.0.1:0
    hostname: mx.test
${o.listener ?? ''}
pools:
  default:
    static: [{ address: ${o.backend} }]
    tls: none
log: { level: debug }
admin: { listen: 127.0.0.1:0 }
${o.redis ? `ledger: { redis: ${o.redis}, keyPrefix: ${o.keyPrefix ?? 'shaping'}, leaseTtl: 3s }` : ''}
${o.shaping ? `shaping:\n${o.shaping}` : ''}
`;
}

export function startShapingNode(o: ShapingNodeOptions): Promise<TestNode> {
  return startNode(shapingYaml(o));
}

export type LogLine = Record<string, unknown>;

/** Waits for a log line with this message (and, if given, whose `client` starts with `client`). */
export async function waitForLog(
  node: TestNode,
  msg: string,
  match: (l: LogLine) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = node.logs.find((l) => l.msg === msg && match(l));
    if (line) return line;
    if (Date.now() > deadline) {
      const seen = node.logs.map((l) => l.msg).slice(-30);
      throw new Error(`no log line "${msg}" within ${timeoutMs} ms; last: ${JSON.stringify(seen)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const fromClient = (address: string) => (l: LogLine) =>
  typeof l.client === 'string' && l.client.startsWith(`${address}:`);

/** A metric's value from the node's /metrics page. */
export async function metric(node: TestNode, name: string, labels = ''): Promise<number> {
  const admin = node.node.adminAddress!;
  const text = await (await fetch(`http://${admin.host}:${admin.port}/metrics`)).text();
  const escaped = `${name}${labels}`.replace(/[{}]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name}${labels} not found`);
  return Number(m[1]);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
