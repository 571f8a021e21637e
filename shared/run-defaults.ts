// Defaults of the run options that are not part of the job: how long a coordinator waits for
// workers and steps, how a worker dials and re-dials its coordinator, how long a stop may take.
// The job's own defaults (timeouts.hangMs, restartWorkers, ...) live in job-schema.ts; these are
// the rest, applied in one place (`withRunDefaults`) and shown by the CLI's --help from here.

export interface RunOptionDefaults {
  /**
   * Coordinator: how long workers have to join, and to report Ready when a ring forms. Generous,
   * because a cluster's worker pods may first need to be scheduled and pull their image.
   * @default 600000 (10 minutes)
   */
  joinTimeoutMs: number;
  /** Coordinator: how long one step, evaluation or state transfer may take. @default 300000 */
  stepTimeoutMs: number;
  /** Coordinator: after SIGTERM/SIGINT, time to reach a step boundary and checkpoint (Kubernetes gives 30 s). @default 25000 */
  stopGraceMs: number;
  /** Worker: attempts to reach the coordinator before giving up (exit 5). @default 10 */
  connectAttempts: number;
  /** Worker: first delay between attempts, doubled after each. @default 250 */
  connectInitialDelayMs: number;
  /** Worker: longest delay between attempts. @default 5000 */
  connectMaxDelayMs: number;
  /** Worker: after losing its coordinator, how long to keep its state and try to rejoin a restarted one (0 = exit). @default 60000 */
  reconnectMs: number;
}

export const RUN_DEFAULTS: Readonly<RunOptionDefaults> = Object.freeze({
  joinTimeoutMs: 600_000,
  stepTimeoutMs: 300_000,
  stopGraceMs: 25_000,
  connectAttempts: 10,
  connectInitialDelayMs: 250,
  connectMaxDelayMs: 5_000,
  reconnectMs: 60_000,
});

type Given<T> = { [K in keyof T]?: T[K] | undefined };

/**
 * `options` with every run option it leaves out (or leaves undefined) set to its default. The
 * one place run-option defaults are applied: everything downstream reads plain numbers.
 */
export function withRunDefaults<T extends Given<RunOptionDefaults>>(
  options: T,
): Omit<T, keyof RunOptionDefaults> & RunOptionDefaults {
  const resolved: Record<string, unknown> = { ...RUN_DEFAULTS };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) resolved[key] = value;
  return resolved as Omit<T, keyof RunOptionDefaults> & RunOptionDefaults;
}
