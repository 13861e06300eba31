// Shared by the config tests: fixture paths and a parse that must fail (or succeed).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { type ConfigError, type ParseOptions, parseConfig, type SmtpLbConfig } from '../src/index.js';

/** Fixtures stay in test/fixtures (not copied to dist): found from dist/test/ two levels up. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url));
}

export const PACKAGE_DIR = fileURLToPath(new URL('../../', import.meta.url));

/** A valid file around one listener and one pool; `extra` is appended YAML. */
export function withBase(extra: string, listenerExtra = ''): string {
  return `listeners:
  - name: smtp
    listen: 127.0.0.1:2525
${listenerExtra}pools:
  default:
    static:
      - address: 127.0.0.1:25
${extra}`;
}

export function errorsOf(text: string, options: ParseOptions = {}): ConfigError[] {
  const result = parseConfig(text, { env: {}, hostname: 'host1', pid: 42, ...options });
  assert.equal(result.ok, false, 'expected the config to be refused');
  return result.ok ? [] : result.errors;
}

/** The error printed for `path`; fails when there is none. */
export function errorAt(errors: readonly ConfigError[], path: string): ConfigError {
  const found = errors.find((e) => e.path === path);
  assert.ok(found, `no error at ${path}; got:\n${errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`);
  return found;
}

export function configOf(text: string, options: ParseOptions = {}): SmtpLbConfig {
  const result = parseConfig(text, { env: {}, hostname: 'host1', pid: 42, ...options });
  if (!result.ok)
    assert.fail(
      `expected a valid config; got:\n${result.errors.map((e) => `${e.path}: ${e.message}`).join('\n')}`,
    );
  return result.config;
}
