// CPU time (user + system) used by whole process groups, read from /proc: testkit starts every
// program in a group of its own, so a group is a path's proxy with all it forked (nginx's worker).
// CPU per message says how much work a proxy does, and is far less disturbed than throughput when
// other programs share the machine.
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export interface CpuTime {
  /** Seconds in user space (the program's own code). */
  user: number;
  /** Seconds in the kernel on its behalf (system calls: sockets, polling). */
  system: number;
}

/** CPU time used so far by the live processes of these process groups. */
export async function groupCpu(pgids: readonly number[]): Promise<CpuTime> {
  const t = { user: 0, system: 0 };
  if (pgids.length === 0) return t;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone in between
    }
    // Fields after the command name, which may itself hold spaces and parentheses.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (pgids.includes(Number(f[2]))) {
      t.user += Number(f[11]) / TICKS;
      t.system += Number(f[12]) / TICKS;
    }
  }
  return t;
}
