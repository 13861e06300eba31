// Loads the Lua scripts (one file per command, `lua/<name>-<numKeys>.lua`, BullMQ style) and
// registers them with ioredis under versioned names (`smtpLbAcquireV1`): nodes of two releases
// can then share one Redis, and even one client, without one overriding the other's script.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Cluster, Redis } from 'ioredis';

/** Bump when a script's contract (keys, arguments, replies) changes. */
export const SCRIPT_VERSION = 2;

export type ScriptName = 'acquire' | 'release' | 'heartbeat' | 'reassert' | 'leave' | 'node-beat';

export interface LuaScript {
  name: ScriptName;
  numberOfKeys: number;
  lua: string;
}

export function commandName(name: ScriptName, version = SCRIPT_VERSION): string {
  const camel = name.replace(/(^|-)([a-z])/g, (_, _dash: string, c: string) => c.toUpperCase());
  return `smtpLb${camel}V${version}`;
}

/**
 * The build copies src/lua to dist/src/lua; a bare `tsc -b` (as a dependent package's build
 * does) does not, so fall back to the sources, which sit at the same relative place.
 */
function luaDir(): string {
  const beside = fileURLToPath(new URL('./lua/', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../../src/lua/', import.meta.url));
}

let cache: LuaScript[] | undefined;

export function loadScripts(): LuaScript[] {
  if (cache) return cache;
  const dir = luaDir();
  const include = (name: string) => readFileSync(`${dir}includes/${name}.lua`, 'utf8');
  cache = readdirSync(dir)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const m = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
      if (!m) throw new Error(`ledger: Lua file name ${file} is not <name>-<numKeys>.lua`);
      const lua = readFileSync(dir + file, 'utf8').replace(/^-- @include ([a-z-]+)$/gm, (_, n: string) =>
        include(n),
      );
      return { name: m[1] as ScriptName, numberOfKeys: Number(m[2]), lua };
    });
  return cache;
}

export function defineLedgerCommands(client: Redis | Cluster, version = SCRIPT_VERSION): void {
  for (const s of loadScripts()) {
    client.defineCommand(commandName(s.name, version), { numberOfKeys: s.numberOfKeys, lua: s.lua });
  }
}
