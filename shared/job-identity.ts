// What makes two jobs "the same run": the settings that decide the trajectory so far (seed, data,
// model, loss, optimizer, schedule, batch size, ...). Run-length settings (how long to train, how
// often to checkpoint or validate, when to stop early) and where it runs (world size, backend,
// timeouts) are not part of it, so `train --resume RUN --epochs N` can extend a run.
//
// Invariant: two jobs with equal trajectoryOf() run the same steps [0, min(their lengths)) with
// the same samples, learning rates and updates, so a checkpoint of one is a valid state of the other.
//
// The one exception is `training.epochs` under a cosine schedule: its learning rate at step s
// depends on the total step count (epochs × batches per epoch), so changing epochs would change
// every step already run. For cosine, epochs stay part of the identity and cannot change on
// resume (keeping the first total would silently stretch a finished curve instead).
import type { Job } from './job-schema.js';

/**
 * Top-level keys and dotted paths that never alter the steps already run. `training.epochs` is
 * listed here but kept for a cosine schedule (see the module header).
 */
export const RUN_LENGTH_SETTINGS = [
  'name',
  'workers',
  'backend',
  'training.epochs',
  'training.maxSteps',
  'checkpoint',
  'validation',
  'hooks',
  'restartWorkers',
  'stragglers',
  'maxConsecutiveSkippedSteps',
  'timeouts',
  'http',
  'tensorboard',
  'security',
  'consistencyCheckEverySteps',
  // Evicts an outlying rank; the steps the others run are the same.
  'robust',
] as const;

/** `job` without its run-length settings: the part a resumed run must share with its checkpoints. */
export function trajectoryOf(job: Job): Record<string, unknown> {
  const copy = structuredClone(job) as unknown as Record<string, unknown>;
  for (const setting of RUN_LENGTH_SETTINGS) {
    if (setting === 'training.epochs' && job.schedule.type === 'cosine') continue;
    const [head, leaf] = setting.split('.') as [string, string | undefined];
    if (leaf === undefined) delete copy[head];
    else delete (copy[head] as Record<string, unknown> | undefined)?.[leaf];
  }
  return copy;
}

/** One trajectory setting that differs between a run's job and the job given to resume it. */
export interface TrajectoryChange {
  /** Dotted path, e.g. "optimizer.learningRate" or "model.layers.0.units". */
  setting: string;
  recorded: unknown;
  given: unknown;
}

/** Every trajectory setting (leaf path) whose value differs; empty when the run may continue. */
export function trajectoryChanges(recorded: Job, given: Job): TrajectoryChange[] {
  const before = leaves(trajectoryOf(recorded));
  const after = leaves(trajectoryOf(given));
  const settings = [...new Set([...before.keys(), ...after.keys()])].sort();
  return settings
    .filter((s) => JSON.stringify(before.get(s)) !== JSON.stringify(after.get(s)))
    .map((setting) => ({ setting, recorded: before.get(setting), given: after.get(setting) }));
}

/** One refusal reason, naming the setting, both values and why it cannot change. */
export function describeChange(change: TrajectoryChange, recorded: Job): string {
  const shown = (v: unknown): string => (v === undefined ? '(unset)' : JSON.stringify(v));
  const why =
    change.setting === 'training.epochs' && recorded.schedule.type === 'cosine'
      ? "a cosine schedule (schedule.type: cosine) sets every step's learning rate from the total step count, so other epochs would change the steps already run"
      : 'it alters the trajectory so far';
  return `${change.setting}: ${shown(change.recorded)} in this run, ${shown(change.given)} now (${why})`;
}

/** What the user may do instead; follows the changes in a refusal. */
export const RESUME_ADVICE =
  'on resume only run-length settings may change (training.epochs, training.maxSteps, checkpoint, validation, ...); start a new run in another directory to change the others';

/** Leaf values by dotted path ("model.layers.0.units"); arrays are walked by index. */
function leaves(value: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (value !== null && typeof value === 'object') {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
    if (entries.length === 0) out.set(prefix, value);
    for (const [key, child] of entries) leaves(child, prefix === '' ? key : `${prefix}.${key}`, out);
  } else if (value !== undefined) {
    out.set(prefix, value);
  }
  return out;
}
