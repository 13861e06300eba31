// Our SMTP client for backend MTAs: one connection per proxied client session.
export { connectUpstream, SmtpUpstreamConnection } from './connection.js';
export { replyText, UpstreamError } from './errors.js';
export type * from './types.js';
export { decodeWire, encodeWire, hasRawBytes } from './wire-text.js';
