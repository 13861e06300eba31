export * from './client-limits-redis.js';
export { commandName, defineLedgerCommands, SCRIPT_VERSION, type ScriptName } from './commands.js';
export {
  type ClientRole,
  createClient,
  disconnectClient,
  type LedgerClient,
  type RedisTarget,
} from './connect.js';
export { checkReply, LedgerError, type LedgerErrorCode, ReplyCode, scriptError } from './errors.js';
export { MemoryLedger } from './memory-ledger.js';
export { type BackendKeys, RedisKeys } from './redis-keys.js';
export { type LedgerLogger, RedisLedger, type RedisLedgerOptions } from './redis-ledger.js';
export * from './suspensions-redis.js';
export type * from './types.js';
