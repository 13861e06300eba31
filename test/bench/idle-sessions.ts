// N idle sessions held on one node (greeting and EHLO done, no transaction, so no backend bound):
// the node's resident memory (VmRSS) and V8 heap before and while they are held, per session.
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { openReady, type Session } from './load-generator.js';

export interface IdleResult {
  sessions: number;
  /** What the node's smtp_lb_sessions_active said while they were held. */
  activeReported: number;
  rssBefore: number;
  rssHeld: number;
  heapBefore: number;
  heapHeld: number;
  seconds: number;
}

export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}

async function metric(adminPort: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await res.text();
  // Default Node.js metrics may or may not carry the smtp_lb_process_ prefix: match the name's end.
  const m = new RegExp(`^\\w*${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`metric ${name} not exposed`);
  return Number(m[1]);
}

const HEAP = 'nodejs_heap_size_used_bytes';

/** Opens `n` sessions `batch` at a time, measures, closes them all. */
export async function holdIdleSessions(
  port: number,
  pid: number,
  adminPort: number,
  n: number,
  batch: number,
): Promise<IdleResult> {
  const rssBefore = await rssBytes(pid);
  const heapBefore = await metric(adminPort, HEAP);
  const held: Session[] = [];
  const started = Date.now();
  try {
    while (held.length < n) {
      const size = Math.min(batch, n - held.length);
      const opened = await Promise.allSettled(Array.from({ length: size }, () => openReady(port)));
      for (const r of opened) {
        if (r.status === 'fulfilled') {
          r.value.keepIdle();
          held.push(r.value);
        }
      }
      const failed = opened.find((r) => r.status === 'rejected');
      if (failed) throw new Error(`session ${held.length + 1} of ${n} failed: ${String(failed.reason)}`);
    }
    const seconds = (Date.now() - started) / 1000;
    // Let the node settle (pending greetings, timers, young-generation garbage) before reading.
    await delay(3000);
    return {
      sessions: held.length,
      activeReported: await metric(adminPort, 'smtp_lb_sessions_active'),
      rssBefore,
      rssHeld: await rssBytes(pid),
      heapBefore,
      heapHeld: await metric(adminPort, HEAP),
      seconds,
    };
  } finally {
    for (const s of held) s.destroy();
  }
}
