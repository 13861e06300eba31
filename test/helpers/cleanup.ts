// What a test file started (nodes, backends, Redis, Consul…) is stopped when its tests end, last
// started first, whether they passed or not.
import { after } from 'node:test';

export interface Cleanup {
  push(...stops: Array<() => unknown>): void;
}

export function cleanupAfterAll(): Cleanup {
  const stops: Array<() => unknown> = [];
  after(async () => {
    for (const stop of stops.reverse()) await stop();
  });
  return { push: (...more) => void stops.push(...more) };
}
