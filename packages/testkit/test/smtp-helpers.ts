// Two tiny raw SMTP ends for the testkit's own tests: a client that sends one line and reads one
// reply (to drive XCLIENT by hand), and a listener that accepts everything and keeps each message.
import net from 'node:net';

export interface RawReply {
  code: number;
  lines: string[];
}

export interface RawClient {
  readonly greeting: RawReply;
  command(line: string): Promise<RawReply>;
  close(): void;
}

/** Connects, reads the greeting; every later read gives up after `timeoutMs`. */
export async function rawConnect(host: string, port: number, timeoutMs = 5000): Promise<RawClient> {
  const socket = net.connect(port, host);
  socket.setEncoding('latin1');
  let buffer = '';
  let waiter: (() => void) | undefined;
  let failure: Error | undefined;
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    waiter?.();
  });
  socket.on('error', (err) => {
    failure = err;
    waiter?.();
  });
  socket.on('close', () => {
    failure ??= new Error('connection closed');
    waiter?.();
  });
  const readReply = () =>
    new Promise<RawReply>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no complete reply within ${timeoutMs} ms: ${buffer}`)),
        timeoutMs,
      );
      const check = () => {
        const end = buffer.search(/^\d{3}(?: [^\r\n]*)?\r\n/m);
        if (end >= 0) {
          const stop = buffer.indexOf('\r\n', end) + 2;
          const lines = buffer.slice(0, stop - 2).split('\r\n');
          buffer = buffer.slice(stop);
          clearTimeout(timer);
          waiter = undefined;
          resolve({ code: Number((lines[lines.length - 1] as string).slice(0, 3)), lines });
        } else if (failure) {
          clearTimeout(timer);
          waiter = undefined;
          reject(failure);
        }
      };
      waiter = check;
      check();
    });
  const greeting = await readReply();
  return {
    greeting,
    command(line) {
      socket.write(`${line}\r\n`);
      return readReply();
    },
    close: () => socket.destroy(),
  };
}

export interface CapturedMessage {
  from: string;
  to: string[];
  /** The message as it arrived, without the final '.' line. */
  data: string;
}

export interface CaptureListener {
  readonly port: number;
  readonly messages: CapturedMessage[];
  close(): Promise<void>;
}

/** A listener on 127.0.0.1:`port` (default: any free port) that answers 250 to every message. */
export async function startCaptureListener(port = 0): Promise<CaptureListener> {
  const messages: CapturedMessage[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setEncoding('latin1');
    let buffer = '';
    let inData = false;
    let current: CapturedMessage = { from: '', to: [], data: '' };
    socket.write('220 capture.test ESMTP\r\n');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        if (inData) {
          const end = buffer.startsWith('.\r\n') ? 0 : buffer.indexOf('\r\n.\r\n');
          if (end < 0) return;
          current.data = end === 0 ? '' : buffer.slice(0, end + 2);
          buffer = buffer.slice(end === 0 ? 3 : end + 5);
          messages.push(current);
          current = { from: '', to: [], data: '' };
          inData = false;
          socket.write('250 2.0.0 captured\r\n');
          continue;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) return;
        const line = buffer.slice(0, eol);
        buffer = buffer.slice(eol + 2);
        const verb = line.split(' ')[0]?.toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') socket.write('250 capture.test\r\n');
        else if (verb === 'MAIL') {
          current.from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          socket.write('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') {
          current.to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          socket.write('250 2.1.5 Ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 2.0.0 Bye\r\n');
          return;
        } else socket.write('250 2.0.0 Ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    messages,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
