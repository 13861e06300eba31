// Capture backends that sign the RCPT reply with their name, so a test can tell from the client's
// side which backend took a session.
import { type CaptureBackend, startCaptureBackend } from '@smtp-lb/testkit';
import type { Cleanup } from './cleanup.js';

export async function taggedBackend(name: string, cleanup: Cleanup): Promise<CaptureBackend> {
  const backend = await startCaptureBackend({
    reply: (ctx) => (ctx.verb === 'RCPT' ? `250 2.1.5 Ok, taken by ${name}` : undefined),
  });
  cleanup.push(() => backend.close());
  return backend;
}
