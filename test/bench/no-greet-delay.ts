// A what-if for one benchmark row only, loaded with `node --import` before the smtp-lb CLI: smtp-server
// waits a fixed 100 ms before every greeting (its early-talker check, SMTPConnection#init), which caps
// a node at (concurrent clients / 0.1 s) new sessions per second. This replaces init with one that
// greets at once and keeps its connection-limit check, to measure what removing the wait would gain.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

interface Connection {
  _server: { options: { maxClients?: number }; connections: Set<unknown> };
  name: string;
  _setListeners(done: () => void): void;
  send(code: number, text: string, context: boolean): void;
  connectionReady(): void;
}

const main = createRequire(import.meta.url).resolve('smtp-server');
// The ESM build, the one the proxy imports (same URL, so the same module instance).
const file = main.replace(/dist[/\\]cjs[/\\]smtp-server\.js$/, 'dist/esm/smtp-connection.js');
const { SMTPConnection } = (await import(pathToFileURL(file).href)) as {
  SMTPConnection: { prototype: { init(this: Connection): void } };
};

SMTPConnection.prototype.init = function init(this: Connection) {
  this._setListeners(() => {
    const max = this._server.options.maxClients;
    if (max && this._server.connections.size > max) {
      this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      return;
    }
    this.connectionReady();
  });
};
