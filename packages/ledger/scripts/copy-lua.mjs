// Copies the Lua scripts next to the compiled code (dist/src/lua), so dist runs on its own.
import { cpSync } from 'node:fs';

const here = new URL('..', import.meta.url);
cpSync(new URL('src/lua', here), new URL('dist/src/lua', here), { recursive: true });
