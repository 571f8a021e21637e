// Embedded workers share the coordinator's stderr. So that their lines are told apart from the
// coordinator's, the coordinator starts each with RINGTRAIN_STDERR_RANK=<the rank it is meant to
// take>, and every line the worker writes to stderr (its logs, its last `ringtrain:` line) then
// starts with `[rank R] `; R follows the rank the worker holds once it joins a ring. The worker
// writes the prefix itself, so its lines still arrive when the coordinator is gone.
// No dependencies: the parent-watch preload imports it before anything else loads.

/** The environment variable that turns the prefix on, holding the rank to start with. */
export const STDERR_RANK_ENV = 'RINGTRAIN_STDERR_RANK';

let rank: number | undefined = rankOf(process.env[STDERR_RANK_ENV]);

function rankOf(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  return Number(text);
}

/** The rank this worker now holds (no effect unless the prefix is on). */
export function setStderrRank(current: number): void {
  if (rank !== undefined) rank = current;
}

/** `text` (one or more lines) with `[rank R] ` before each line, when the prefix is on. */
export function stderrPrefixed(text: string): string {
  if (rank === undefined) return text;
  const prefix = `[rank ${rank}] `;
  return text.replace(/^(?=.)/gm, prefix);
}
