// A raw SMTP client for tests that need to send exact bytes (bare LF, pipelining, smuggling) and read
// every reply as the server wrote it.
import { connect, type Socket } from 'node:net';

export interface RawReply {
  code: number;
  lines: string[];
  /** The reply exactly as received, CRLFs included. */
  raw: string;
}

export class SmtpDialog {
  readonly #socket: Socket;
  #buffer = '';
  #waiting: Array<() => void> = [];
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.#buffer += d;
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1', localAddress?: string): Promise<SmtpDialog> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host, localAddress }, () => resolve(new SmtpDialog(s)));
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  #wake(): void {
    for (const w of this.#waiting.splice(0)) w();
  }

  /** Every write leaves at once (no Nagle wait for the ACK of the previous one). */
  noDelay(): this {
    this.#socket.setNoDelay(true);
    return this;
  }

  /** Shuts down the sending side (TCP half-close); replies can still be read. */
  endInput(): void {
    this.#socket.end();
  }

  /** Writes bytes as they are. */
  write(data: string | Buffer): void {
    this.#socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Reads one complete (possibly multi-line) reply; rejects on close or after timeoutMs. */
  async read(timeoutMs = 20_000): Promise<RawReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.#take();
      if (reply) return reply;
      if (this.#closed) throw new Error(`connection closed; unread: ${JSON.stringify(this.#buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms; have ${JSON.stringify(this.#buffer)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiting.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  #take(): RawReply | undefined {
    let pos = 0;
    const lines: string[] = [];
    for (;;) {
      const end = this.#buffer.indexOf('\r\n', pos);
      if (end < 0) return undefined;
      const line = this.#buffer.slice(pos, end);
      pos = end + 2;
      lines.push(line);
      if (line[3] !== '-') break;
    }
    const raw = this.#buffer.slice(0, pos);
    this.#buffer = this.#buffer.slice(pos);
    return { code: Number(lines[0]!.slice(0, 3)), lines: lines.map((l) => l.slice(4)), raw };
  }

  /** Sends one command line (CRLF added) and reads its reply. */
  async cmd(line: string, timeoutMs?: number): Promise<RawReply> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}
