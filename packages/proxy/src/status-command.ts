// `smtp-lb status [--admin URL] [--token T]`: a node's /status as a table an operator can read at
// 3 am: ledger mode, then per pool each backend's weight, cap, connections and health.
import type { NodeStatus } from './admin.js';

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatStatus(s: NodeStatus): string {
  const head = `node ${s.node}  ${s.draining ? 'DRAINING' : s.ready ? 'ready' : 'NOT READY'}  ledger ${s.ledger.mode}  sessions ${s.sessions}`;
  // With outlier detection on a pool: a column of deferred / all transactions in its window.
  const deferrals = s.pools.some((p) => p.backends.some((b) => b.outlier));
  const rows = [['POOL', 'BACKEND', 'WEIGHT', 'CAP', 'NODE', 'CLUSTER', 'HEALTH']];
  if (deferrals) rows[0]!.push('DEFERRED');
  for (const p of s.pools) {
    if (p.backends.length === 0)
      rows.push([
        p.name,
        p.ready ? '(no backends)' : '(discovery pending)',
        ...rows[0]!.slice(2).map(() => ''),
      ]);
    for (const b of p.backends) {
      const weight = b.effectiveWeight < b.weight ? `${b.effectiveWeight}/${b.weight}` : String(b.weight);
      const o = b.outlier;
      const health =
        b.health === 'ejected' && o?.ejectedForMs !== undefined
          ? `EJECTED ${Math.ceil(o.ejectedForMs / 1000)}s (${o.reason}, ${o.ejections}x)`
          : b.health;
      rows.push([
        p.name,
        b.id,
        weight,
        String(b.maxConnections),
        String(b.nodeConnections),
        String(b.clusterConnections),
        b.ledger === 'degraded'
          ? 'LEDGER DEGRADED'
          : b.clusterConnections >= b.maxConnections
            ? 'AT CAP'
            : health,
        ...(deferrals ? [o ? `${o.deferred}/${o.transactions}` : ''] : []),
      ]);
    }
  }
  const maps = s.recipientMaps ?? [];
  if (maps.length === 0) return `${head}\n${table(rows)}\n`;
  const mapRows = [['RECIPIENT MAP', 'KIND', 'STATE', 'ENTRIES', 'CACHED', 'DETAIL']];
  for (const m of maps) {
    mapRows.push([
      m.name,
      m.kind,
      m.state,
      m.entries === undefined ? '' : String(m.entries),
      String(m.cached),
      m.detail ?? '',
    ]);
  }
  return `${head}\n${table(rows)}\n\n${table(mapRows)}\n`;
}

export async function runStatus(
  argv: string[],
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  let admin = process.env.SMTP_LB_ADMIN ?? 'http://127.0.0.1:9090';
  let token = process.env.SMTP_LB_ADMIN_TOKEN;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--admin') admin = argv[++i] ?? admin;
    else if (argv[i] === '--token') token = argv[++i];
    else {
      err.write(`usage: smtp-lb status [--admin URL] [--token TOKEN]\n`);
      return 2;
    }
  }
  try {
    const res = await fetch(`${admin.replace(/\/$/, '')}/status`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) {
      err.write(`smtp-lb status: ${admin} answered ${res.status}\n`);
      return 1;
    }
    out.write(formatStatus((await res.json()) as NodeStatus));
    return 0;
  } catch (e) {
    err.write(`smtp-lb status: cannot reach ${admin}: ${(e as Error).message}\n`);
    return 1;
  }
}
