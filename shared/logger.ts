// One pino root logger per process; components take child loggers carrying `component`, and, where
// they apply, `runId`, `rank` and `generation` (a call adds `step` and the like). Logs go to
// stderr as JSON lines (stdout is kept for the progress report).
//
// Invariant: no key is written twice in one line. pino writes the base (`pid`), each child's
// bindings and the call's object one after the other without merging, so a field bound in a
// child is never passed again in a call or a deeper child.
import { pino, type Logger } from 'pino';
import { stderrPrefixed } from './stderr-prefix.js';

export type { Logger } from 'pino';

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

let root: Logger | undefined;

/** Level from RINGTRAIN_LOG_LEVEL, else `fallback`. */
export function logLevel(fallback = 'warn'): string {
  const env = process.env['RINGTRAIN_LOG_LEVEL'];
  return env !== undefined && LEVELS.has(env) ? env : fallback;
}

export function rootLogger(): Logger {
  if (root === undefined) {
    const stderr = pino.destination({ fd: 2, sync: true });
    // An embedded worker's lines start with its rank (shared/stderr-prefix.ts).
    root = pino(
      { level: logLevel(), base: { pid: process.pid } },
      { write: (line: string) => stderr.write(stderrPrefixed(line)) },
    );
  }
  return root;
}

/** Child logger for one component (and rank, where it has one). */
export function componentLogger(component: string, fields: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...fields });
}

/** The run's id in logs: the run directory's name (workers receive the coordinator's path of it). */
export function runIdOf(runDirPath: string): string {
  return (
    runDirPath
      .split(/[\\/]/)
      .filter((part) => part !== '')
      .at(-1) ?? runDirPath
  );
}
