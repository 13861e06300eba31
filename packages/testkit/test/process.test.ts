// The process helpers keep their promise: stop() ends the whole process group (SIGKILL when SIGTERM
// is ignored), waits are bounded and explain themselves, and nothing outlives the test process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  makeTempDir,
  pollUntil,
  runCommand,
  startProcess,
  type TestkitError,
  waitForPort,
} from '../src/index.js';

// A process that has ended but whose zombie nobody reaped (PID 1 here does not) counts as gone.
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const processModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/process.js');

describe('process helpers', { timeout: 30_000 }, () => {
  test('freePort returns a port nobody listens on, that a server can then bind', async () => {
    const port = await freePort();
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await waitForPort(port, { timeoutMs: 2000 });
    await new Promise((resolve) => server.close(resolve));
  });

  test('stop() ends the process and the children it forked', async () => {
    const p = startProcess('forker', 'sh', ['-c', 'sleep 300 & echo child=$!; sleep 300']);
    const [, child] = await p.waitForOutput(/child=(\d+)/);
    const childPid = Number(child);
    assert.ok(isAlive(childPid));
    const exit = await p.stop();
    assert.equal(exit.signal, 'SIGTERM');
    await pollUntil('forked child gone', async () => (isAlive(childPid) ? undefined : true), {
      timeoutMs: 2000,
    });
  });

  test('a process that ignores SIGTERM is killed after the bound', async () => {
    const p = startProcess('stubborn', 'sh', ['-c', "trap '' TERM; echo ready; sleep 300"], {
      stopTimeoutMs: 300,
    });
    await p.waitForOutput(/ready/);
    const started = Date.now();
    const exit = await p.stop();
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(Date.now() - started < 5000);
  });

  test('waiting for output fails with the output when the process exits first, or with a timeout', async () => {
    const quitter = startProcess('quitter', 'sh', ['-c', 'echo boom; exit 3']);
    await assert.rejects(quitter.waitForOutput(/never/), (err: TestkitError) => {
      assert.equal(err.code, 'TESTKIT_EXITED');
      assert.match(err.message, /code 3/);
      assert.match(err.message, /boom/);
      return true;
    });
    assert.deepEqual(await quitter.waitForExit(), { code: 3, signal: null });
    assert.deepEqual(quitter.exitStatus(), { code: 3, signal: null });
    const sleeper = startProcess('sleeper', 'sleep', ['300']);
    await assert.rejects(sleeper.waitForOutput(/never/, 200), { code: 'TESTKIT_TIMEOUT' });
    await assert.rejects(sleeper.waitForExit(200), { code: 'TESTKIT_TIMEOUT' });
    assert.equal(sleeper.exitStatus(), undefined);
    await sleeper.stop();
    const missing = startProcess('missing', 'no-such-program-smtp-lb', []);
    await assert.rejects(missing.waitForOutput(/x/), { code: 'TESTKIT_SPAWN' });
    await missing.stop();
  });

  test('runCommand returns code and output, feeds stdin, and kills a command past its bound', async () => {
    const r = await runCommand('sh', ['-c', 'cat; echo err >&2; exit 4'], { input: 'in\n' });
    assert.deepEqual(r, { code: 4, signal: null, stdout: 'in\n', stderr: 'err\n' });
    await assert.rejects(runCommand('sleep', ['300'], { timeoutMs: 200 }), { code: 'TESTKIT_TIMEOUT' });
  });

  test('waitForPort gives up when the server process exits', async () => {
    const port = await freePort();
    const p = startProcess('not-a-server', 'sh', ['-c', 'echo bye; exit 1']);
    await assert.rejects(waitForPort(port, { process: p, timeoutMs: 5000 }), { code: 'TESTKIT_EXITED' });
  });

  test('makeTempDir makes a private dir and remove() deletes it', async () => {
    const dir = await makeTempDir('unit');
    await writeFile(path.join(dir.path, 'f'), 'x');
    assert.ok(existsSync(dir.path));
    await dir.remove();
    assert.ok(!existsSync(dir.path));
  });

  // The last resort: a test process that ends without calling stop() takes its servers with it.
  for (const ending of ['exit', 'SIGTERM'] as const) {
    test(`servers and temp dirs do not outlive a test process that ends by ${ending}`, async () => {
      const script = `
        import { startProcess, makeTempDir } from ${JSON.stringify(processModule)};
        const p = startProcess('orphan', 'sleep', ['300']);
        const dir = await makeTempDir('orphan');
        console.log(JSON.stringify({ pid: p.pid, dir: dir.path }));
        ${ending === 'exit' ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'}
      `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const ended = new Promise<[number | null, string | null]>((resolve) =>
        child.once('exit', (c, s) => resolve([c, s])),
      );
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
      });
      const info = await pollUntil('orphan started', async () => {
        const line = out.split('\n').find((l) => l.startsWith('{'));
        return line ? (JSON.parse(line) as { pid: number; dir: string }) : undefined;
      });
      if (ending === 'SIGTERM') {
        await delay(50);
        child.kill('SIGTERM');
      }
      const [code, signal] = await ended;
      if (ending === 'SIGTERM') assert.equal(signal, 'SIGTERM');
      else assert.equal(code, 0);
      await pollUntil('orphan killed', async () => (isAlive(info.pid) ? undefined : true), {
        timeoutMs: 2000,
      });
      assert.ok(!existsSync(info.dir));
    });
  }
});
