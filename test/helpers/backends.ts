// smtp-server backends that sign their reply after the final dot with their name, so a test can tell
// from the client's side which backend took a message.
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import type { Cleanup } from './cleanup.js';

export async function taggedBackend(name: string, cleanup: Cleanup): Promise<CaptureBackend> {
  const backend = await startCaptureBackend({
    dataReply: () => `250 Ok, taken by ${name}`,
  });
  cleanup.push(() => backend.close());
  return backend;
}
