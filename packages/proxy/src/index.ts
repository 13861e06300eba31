export { SmtpLbNode, type NodeOptions } from './node.js';
export { Metrics } from './metrics.js';
export { createLogger, type Logger } from './logger.js';
export { Router, domainOf } from './router.js';
export { replies } from './replies.js';
