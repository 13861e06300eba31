// The replies the shaping steps make before (or instead of) the SMTP session. RFC 5321 3.1: a server
// may answer a connection with 554 or 421 instead of the 220 greeting; both are followed by a close.
import { reply } from '../replies.js';

export const shapingReplies = {
  tooManySessions: () => reply(421, '4.7.0', 'Too many connections from your address, try again later'),
  tooManyFromNetwork: () => reply(421, '4.7.0', 'Too many connections from your network, try again later'),
  connectionRate: () => reply(421, '4.7.0', 'Connection rate limit exceeded, try again later'),
  messageRate: () => reply(421, '4.7.0', 'Message rate limit exceeded, try again later'),
  tarpitFull: () => reply(421, '4.7.0', 'Too many suspect connections, try again later'),
  earlyTalker: () => reply(554, '5.5.1', 'Protocol error: you talked before the greeting'),
  policyUnavailable: () => reply(451, '4.3.5', 'Server configuration problem, try again later'),
  dnsbl: (address: string) =>
    reply(554, '5.7.1', `Service unavailable; client [${address}] blocked using DNSBL`),
};
