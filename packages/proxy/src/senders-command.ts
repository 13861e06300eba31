// `smtp-lb senders [list] | lift USER [--admin URL] [--token T]`: the users suspended cluster-wide
// (any node's admin API answers for all of them when they share Redis), and lifting one.
import type { Suspension } from '@smtp-lb/ledger';
import { table } from './status-command.js';

const USAGE = 'usage: smtp-lb senders [list] | lift USER  [--admin URL] [--token TOKEN]\n';

export function formatSuspensions(list: Suspension[]): string {
  if (list.length === 0) return 'no suspended senders\n';
  const rows = [['USER', 'SINCE', 'NODE', 'REASON']];
  for (const s of list) rows.push([s.user, new Date(s.since).toISOString(), s.node, s.reason]);
  return `${table(rows)}\n`;
}

export async function runSenders(
  argv: string[],
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  let admin = process.env.SMTP_LB_ADMIN ?? 'http://127.0.0.1:9090';
  let token = process.env.SMTP_LB_ADMIN_TOKEN;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--admin') admin = argv[++i] ?? admin;
    else if (argv[i] === '--token') token = argv[++i];
    else words.push(argv[i]!);
  }
  const [verb = 'list', user, ...rest] = words;
  if (rest.length > 0 || (verb === 'lift') !== (user !== undefined) || !['list', 'lift'].includes(verb)) {
    err.write(USAGE);
    return 2;
  }
  const base = `${admin.replace(/\/$/, '')}/senders/suspended`;
  try {
    const res = await fetch(verb === 'lift' ? `${base}/${encodeURIComponent(user!)}` : base, {
      method: verb === 'lift' ? 'DELETE' : 'GET',
      headers: token ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(5000),
    });
    const body = (await res.json().catch(() => ({}))) as { suspended?: Suspension[]; error?: string };
    if (verb === 'lift') {
      if (res.status === 404 && !body.error) {
        err.write(`smtp-lb senders: ${user} is not suspended\n`);
        return 1;
      }
      if (!res.ok) {
        err.write(`smtp-lb senders: ${admin} answered ${res.status}${body.error ? `: ${body.error}` : ''}\n`);
        return 1;
      }
      out.write(`lifted the suspension of ${user}\n`);
      return 0;
    }
    if (!res.ok) {
      err.write(`smtp-lb senders: ${admin} answered ${res.status}${body.error ? `: ${body.error}` : ''}\n`);
      return 1;
    }
    out.write(formatSuspensions(body.suspended ?? []));
    return 0;
  } catch (e) {
    err.write(`smtp-lb senders: cannot reach ${admin}: ${(e as Error).message}\n`);
    return 1;
  }
}
