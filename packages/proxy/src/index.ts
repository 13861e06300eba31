export type { NodeStatus } from './admin.js';
export { createLogger, type Logger } from './logger.js';
export { Metrics } from './metrics.js';
export { type NodeOptions, SmtpLbNode } from './node.js';
export { replies, wireReply } from './replies.js';
export { domainOf, Router } from './router.js';
export { formatStatus } from './status-command.js';
