// JSON logs (pino). Every line of a session carries its session id and client address (smtp-server's
// `cid`, STYLE.md), by way of a child logger made when the session starts.
import { type Logger, pino } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? pino.destination({ sync: false }),
  );
}
