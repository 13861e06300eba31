// The cap test's workload: many sessions at once, spread over several ledger instances, each
// taking a slot (waiting for a release when the backend is full), holding it briefly, and
// giving it back. Records the highest number of slots granted at the same instant.

import { mulberry32 } from '@smtp-lb/testkit';
import type { Ledger } from '../../src/types.js';
import { sleep, Waiters } from './util.js';

export interface HammerResult {
  maxConcurrent: number;
  granted: number;
  refusals: number;
}

export async function hammer(
  ledgers: Ledger[],
  backendId: string,
  cap: number,
  sessions: number,
): Promise<HammerResult> {
  const random = mulberry32(2024);
  const waiters = ledgers.map((l) => new Waiters(l, backendId));
  let held = 0;
  let maxConcurrent = 0;
  let granted = 0;
  let refusals = 0;
  const session = async (k: number) => {
    const ledger = ledgers[k % ledgers.length]!;
    const holdMs = 1 + Math.floor(random() * 5);
    for (;;) {
      const lease = await ledger.tryAcquire(backendId, cap);
      if (lease) {
        held += 1;
        granted += 1;
        maxConcurrent = Math.max(maxConcurrent, held);
        await sleep(holdMs);
        held -= 1;
        lease.release();
        return;
      }
      refusals += 1;
      // Woken by a release (local, or another node's via pub/sub); the timeout only bounds a
      // wake-up lost to a race between the refusal and the release.
      await waiters[k % ledgers.length]!.wait(250);
    }
  };
  await Promise.all(Array.from({ length: sessions }, (_, k) => session(k)));
  return { maxConcurrent, granted, refusals };
}
