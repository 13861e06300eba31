// Test helpers: wait for a source to deliver a set that satisfies a predicate, and a logger that keeps
// its lines so tests can assert what an operator would read.
import type { BackendSource, DiscoveredBackend, DiscoveryLogger } from '../src/index.js';

export function nextSet(
  source: BackendSource,
  predicate: (backends: readonly DiscoveredBackend[]) => boolean,
  timeoutMs = 5_000,
): Promise<{ backends: readonly DiscoveredBackend[]; at: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(
          `no matching backend set within ${timeoutMs} ms; last: ${JSON.stringify(source.current())}`,
        ),
      );
    }, timeoutMs);
    const off = source.onChange((backends) => {
      if (!predicate(backends)) return;
      const at = performance.now();
      clearTimeout(timer);
      off();
      resolve({ backends, at });
    });
  });
}

export interface LogLine {
  level: 'info' | 'warn';
  obj: object;
  msg: string;
}

export function memoryLogger(): DiscoveryLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, msg }),
  };
}

export const ids = (backends: readonly DiscoveredBackend[]): string[] => backends.map((b) => b.id);
