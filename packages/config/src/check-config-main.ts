// `node dist/src/check-config-main.js FILE`: check-config as a process of its own, for tests and for
// CI jobs that validate a file without the proxy installed.
import { runCheckConfig } from './check-config.js';

process.exitCode = runCheckConfig(process.argv.slice(2), process.stdout, process.stderr);
