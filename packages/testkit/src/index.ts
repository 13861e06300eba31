export * from './capture-backend.js';
export * from './errors.js';
export * from './free-port.js';
export * from './postfix.js';
export * from './process.js';
export * from './redis.js';
export * from './smtp-sink.js';
export * from './swaks.js';
