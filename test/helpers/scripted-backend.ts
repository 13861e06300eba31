// A wire-level SMTP backend whose replies to RCPT and to the end of DATA are raw bytes the test gives
// (a 5 KiB line, NUL, bytes that are not UTF-8: what no real MTA can be configured to send). It
// records every command line as the bytes it received.
import net from 'node:net';

export interface ScriptedBackend {
  address: string;
  /** Every command line received (without its CRLF), as bytes. */
  lines: Buffer[];
  /** Each message's content as received (dot-stuffed, without the final dot). */
  messages: Buffer[];
  close(): Promise<void>;
}

export interface Script {
  /** The reply to a RCPT line (CRLF included); default `250 2.1.5 Ok`. */
  rcpt?: (line: Buffer) => Buffer | string | undefined;
  /** The reply at the end of DATA (CRLF included); default `250 2.0.0 Ok: queued`. */
  data?: () => Buffer | string | undefined;
}

export async function startScriptedBackend(script: Script = {}): Promise<ScriptedBackend> {
  const lines: Buffer[] = [];
  const messages: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let buf = Buffer.alloc(0);
    let inData = false;
    const say = (s: Buffer | string) => {
      if (!socket.destroyed) socket.write(s);
    };
    const command = (line: Buffer) => {
      lines.push(line);
      const verb = line.subarray(0, 4).toString('latin1').toUpperCase();
      if (verb === 'EHLO')
        return say('250-scripted.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n');
      if (verb === 'MAIL') return say('250 2.1.0 Ok\r\n');
      if (verb === 'RCPT') return say(script.rcpt?.(line) ?? '250 2.1.5 Ok\r\n');
      if (verb === 'DATA') {
        inData = true;
        return say('354 go ahead\r\n');
      }
      if (verb === 'QUIT') {
        say('221 2.0.0 Bye\r\n');
        socket.end();
        return;
      }
      say('250 2.0.0 Ok\r\n');
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          messages.push(buf.subarray(0, end + 2));
          buf = buf.subarray(end + 5);
          inData = false;
          say(script.data?.() ?? '250 2.0.0 Ok: queued\r\n');
          continue;
        }
        const lf = buf.indexOf('\n');
        if (lf < 0) return;
        const line = buf.subarray(0, lf > 0 && buf[lf - 1] === 0x0d ? lf - 1 : lf);
        buf = buf.subarray(lf + 1);
        command(Buffer.from(line));
      }
    });
    say('220 scripted.test ESMTP\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    lines,
    messages,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
