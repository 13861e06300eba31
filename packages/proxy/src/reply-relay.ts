// Relays a reply to the client exactly as the backend gave it. smtp-server formats every reply a hook
// returns itself and, with ENHANCEDSTATUSCODES on, prefixes its own enhanced code (`554 5.6.0 5.7.1
// …`) and flattens multi-line text. Its connections have one write site for replies, `send`; we
// wrap it once so that a reply the session queued with `queueRelay` is written verbatim instead.
import type { Reply } from '@smtp-lb/upstream';
import { smtpConnectionPrototype } from './smtp-connection-class.js';

const RELAY = Symbol('smtp-lb.relay');

interface RelaySession {
  [RELAY]?: Reply;
}

let installed = false;

/** Wraps SMTPConnection#send (once per process). */
export async function installReplyRelay(): Promise<void> {
  if (installed) return;
  const proto = await smtpConnectionPrototype();
  const original = proto.send;
  proto.send = function send(this: { session?: RelaySession }, code, data, context) {
    const queued = this.session?.[RELAY];
    // Same class only: smtp-server answers every accepted RCPT with 250, the backend may say 251.
    if (queued && Math.trunc(queued.code / 100) === Math.trunc(code / 100)) {
      this.session![RELAY] = undefined;
      // context false: no enhanced code of smtp-server's own; the lines carry the backend's.
      return original.call(this, queued.code, queued.lines.length > 0 ? queued.lines : [''], false);
    }
    return original.call(this, code, data, context);
  };
  installed = true;
}

/**
 * Queues `reply` as the next reply with its code on this session. For a 4xx/5xx it returns the error
 * to hand to the smtp-server callback; for a 2xx the caller calls back without an error.
 */
export function queueRelay(session: object, reply: Reply): Error & { responseCode: number } {
  (session as RelaySession)[RELAY] = reply;
  // A reply, not a fault: no stack trace (capturing one cost ~4 % of a reused-connection profile).
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const err = new Error(reply.lines.join(' ')) as Error & { responseCode: number };
  Error.stackTraceLimit = limit;
  err.responseCode = reply.code;
  return err;
}
