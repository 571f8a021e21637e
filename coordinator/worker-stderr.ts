// A local worker's stderr, passed on to this process's stderr one line at a time with the
// worker's rank in front (`[rank 1] {"level":40,...}`), so that in embedded mode a worker's
// warnings and errors are told apart from the coordinator's own. The rank is the one the line
// itself names (a worker's log lines carry the rank of their ring), else the rank the worker was
// started to take.
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** `[rank R] ` for `line`: R from its JSON `rank` field when it has one, else `startedAs`. */
export function rankPrefix(line: string, startedAs: number): string {
  let rank = startedAs;
  if (line.startsWith('{')) {
    try {
      const value: unknown = (JSON.parse(line) as Record<string, unknown>)['rank'];
      if (typeof value === 'number' && Number.isInteger(value) && value >= 0) rank = value;
    } catch {
      // not a JSON line after all: the rank it was started as
    }
  }
  return `[rank ${rank}] `;
}

/** Copies `stderr` to `out` line by line with rank prefixes, until it ends. */
export function forwardWorkerStderr(
  stderr: Readable,
  startedAs: number,
  out: NodeJS.WritableStream = process.stderr,
): void {
  const lines = createInterface({ input: stderr, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line !== '') out.write(`${rankPrefix(line, startedAs)}${line}\n`);
  });
}
