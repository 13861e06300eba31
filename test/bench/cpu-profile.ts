// Reads a V8 .cpuprofile (node --cpu-prof) and sums self time per function and per module (npm
// package, workspace package, Node.js core area, native), and attributes native self time (socket
// writes, closes) to the first caller in our code or a dependency, which is where a fix would go.
import { readFile } from 'node:fs/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Share {
  name: string;
  ms: number;
  /** Share of the busy time (samples that were not idle). */
  busyShare: number;
}

export interface ProfileSummary {
  totalMs: number;
  busyMs: number;
  idleShare: number;
  functions: Share[];
  modules: Share[];
  nativeByCaller: Share[];
}

const IDLE = '(idle)';

function relative(url: string, root: string): string {
  return url.startsWith(`file://${root}/`) ? url.slice(`file://${root}/`.length) : url;
}

function moduleOf(frame: CallFrame, root: string): string {
  const url = relative(frame.url, root);
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return dep[1]!;
  const ws = /^(?:packages\/([^/]+)|test)\//.exec(url);
  if (ws) return ws[1] ? `@smtp-lb/${ws[1]}` : 'test';
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : 'native';
  return url;
}

// A RegExp frame is named by its whole pattern; the start is enough to recognise it.
function short(name: string): string {
  return name.length > 60 ? `${name.slice(0, 57)}...` : name;
}

function label(frame: CallFrame, root: string): string {
  const url = relative(frame.url, root);
  const fn = short(frame.functionName || '(anonymous)');
  return url ? `${fn} ${url.replace(/^.*node_modules\//, '')}:${frame.lineNumber + 1}` : fn;
}

function ranked(map: Map<string, number>, busyUs: number, limit: number): Share[] {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, us]) => ({ name, ms: us / 1000, busyShare: busyUs > 0 ? us / busyUs : 0 }));
}

/**
 * `fromUs`: only samples taken at or after this time, in microseconds of the monotonic clock (V8's
 * profile clock and process.hrtime share it on Linux), to leave start-up and warm-up out.
 */
export async function summarizeProfile(
  file: string,
  root: string,
  options: { fromUs?: number; limit?: number } = {},
): Promise<ProfileSummary> {
  const limit = options.limit ?? 15;
  const fromUs = options.fromUs ?? 0;
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    at += us;
    if (at >= fromUs) selfUs.set(id, (selfUs.get(id) ?? 0) + us);
  });

  let totalUs = 0;
  let idleUs = 0;
  const functions = new Map<string, number>();
  const modules = new Map<string, number>();
  const nativeByCaller = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    totalUs += us;
    if (frame.functionName === IDLE) {
      idleUs += us;
      continue;
    }
    add(functions, label(frame, root), us);
    add(modules, moduleOf(frame, root), us);
    if (frame.url === '' && !frame.functionName.startsWith('(')) {
      let up = parent.get(id);
      let caller = '(no JS caller)';
      while (up !== undefined) {
        const f = byId.get(up)!.callFrame;
        if (/\/(packages|node_modules)\//.test(f.url)) {
          caller = `${short(frame.functionName)} ← ${label(f, root)}`;
          break;
        }
        up = parent.get(up);
      }
      add(
        nativeByCaller,
        caller === '(no JS caller)' ? `${short(frame.functionName)} ${caller}` : caller,
        us,
      );
    }
  }
  const busyUs = totalUs - idleUs;
  return {
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    idleShare: totalUs > 0 ? idleUs / totalUs : 0,
    functions: ranked(functions, busyUs, limit),
    modules: ranked(modules, busyUs, limit),
    nativeByCaller: ranked(nativeByCaller, busyUs, 8),
  };
}
