// One pino root logger per process; components take child loggers carrying `component` and `rank`.
// Logs go to stderr as JSON lines (stdout is kept for the human progress report).
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

let root: Logger | undefined;

/** Level from RINGTRAIN_LOG_LEVEL, else `fallback`. */
export function logLevel(fallback = 'warn'): string {
  const env = process.env['RINGTRAIN_LOG_LEVEL'];
  return env !== undefined && LEVELS.has(env) ? env : fallback;
}

export function rootLogger(): Logger {
  root ??= pino({ level: logLevel(), base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
  return root;
}

/** Child logger for one component (and rank, where it has one). */
export function componentLogger(component: string, fields: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...fields });
}
