// One GET against Consul's HTTP API that returns the JSON body and X-Consul-Index. node:http(s) rather
// than fetch: Node's fetch cannot take a private CA without the undici package, and the `consul` npm
// client cancels through its own EventEmitter `ctx` and hides the index header behind papi internals.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { DiscoveryError } from './errors.js';

export interface ConsulHttpOptions {
  /** Base URL of the agent, e.g. `http://127.0.0.1:8500`. */
  address: string;
  token?: string;
  /** PEM text of extra CAs for an https address. */
  ca?: string;
}

export interface ConsulAnswer {
  body: unknown;
  /** X-Consul-Index; NaN when missing or not a number. */
  index: number;
}

const MAX_BODY_BYTES = 64 * 1024 * 1024;

export function consulGet(
  opts: ConsulHttpOptions,
  path: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<ConsulAnswer> {
  const url = new URL(path, opts.address.endsWith('/') ? opts.address : `${opts.address}/`);
  const secure = url.protocol === 'https:';
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.token) headers['x-consul-token'] = opts.token;
  return new Promise<ConsulAnswer>((resolve, reject) => {
    let settled = false;
    const finish = (err: DiscoveryError | undefined, answer?: ConsulAnswer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(answer as ConsulAnswer);
    };
    const onAbort = (): void => {
      req.destroy();
      finish(new DiscoveryError('DISCOVERY_CONSUL_UNREACHABLE', `request to ${url.origin} aborted`));
    };
    // A blocking query that outlives its wait (plus Consul's jitter) means a dead peer, not a slow answer.
    const timer = setTimeout(() => {
      req.destroy();
      finish(
        new DiscoveryError('DISCOVERY_CONSUL_TIMEOUT', `no answer from ${url.origin} within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    const req = (secure ? httpsRequest : httpRequest)(
      url,
      { method: 'GET', headers, agent: false, ...(secure && opts.ca ? { ca: opts.ca } : {}) },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            req.destroy();
            finish(new DiscoveryError('DISCOVERY_CONSUL_BAD_ANSWER', `answer from ${url.origin} too large`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (cause) =>
          finish(
            new DiscoveryError(
              'DISCOVERY_CONSUL_UNREACHABLE',
              `reading from ${url.origin}: ${cause.message}`,
              { cause },
            ),
          ),
        );
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            finish(
              new DiscoveryError(
                'DISCOVERY_CONSUL_HTTP',
                `consul answered ${status}: ${text.slice(0, 200).trim()}`,
                {
                  status,
                },
              ),
            );
            return;
          }
          try {
            finish(undefined, { body: JSON.parse(text), index: Number(res.headers['x-consul-index']) });
          } catch (cause) {
            finish(
              new DiscoveryError('DISCOVERY_CONSUL_BAD_ANSWER', `consul answered with bad JSON`, { cause }),
            );
          }
        });
      },
    );
    req.on('error', (cause) =>
      finish(
        new DiscoveryError('DISCOVERY_CONSUL_UNREACHABLE', `${url.origin}: ${cause.message}`, { cause }),
      ),
    );
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    req.end();
  });
}
