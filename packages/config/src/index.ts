// Public surface of @smtp-lb/config: load and check a config file, its schema and JSON Schema.

export {
  CHECK_CONFIG_USAGE,
  type CheckResult,
  checkConfigFile,
  formatErrors,
  runCheckConfig,
  type TextSink,
} from './check-config.js';
export { DEFAULTS } from './defaults.js';
export type { Env } from './env.js';
export {
  type ConfigError,
  type ConfigErrorCode,
  ConfigInvalidError,
  formatPath,
  ROOT_PATH,
} from './errors.js';
export { configJsonSchema, writeConfigJsonSchema } from './json-schema.js';
export { type ConfigResult, loadConfig, loadConfigOrThrow, type ParseOptions, parseConfig } from './load.js';
export type * from './model.js';
export { ConfigFileSchema, type RawConfig } from './schema.js';
export { parseDuration, parseHostPort, parseSize } from './units.js';
