// smtp-server's per-client connection class. The package exports only SMTPServer, but the proxy
// adjusts two behaviours of the connection (reply-relay.ts, immediate-greeting.ts); both reach the
// class here, from the module next to the server's own entry point.
export interface SmtpConnectionPrototype {
  send(this: unknown, code: number, data?: unknown, context?: unknown): unknown;
  init(this: unknown): void;
}

let cached: Promise<SmtpConnectionPrototype> | undefined;

export function smtpConnectionPrototype(): Promise<SmtpConnectionPrototype> {
  cached ??= (async () => {
    const entry = import.meta.resolve('smtp-server');
    const mod = (await import(new URL('./smtp-connection.js', entry).href)) as {
      SMTPConnection: { prototype: SmtpConnectionPrototype };
    };
    return mod.SMTPConnection.prototype;
  })();
  return cached;
}
