// train(): one run, in the caller's process: the coordinator here, its workers as child
// processes (or joining from elsewhere in cluster mode). The CLI's `train` and `coordinator`
// commands are thin callers of it.
//
// Invariants: it never calls process.exit and installs no signal handler; when it settles, every
// worker process it started has exited and its server, sockets and timers are closed.
import { runCoordinator, type RunSummary } from '../coordinator/coordinator.js';
import { resolveTrainOptions, type TrainOptions } from './train-options.js';

/**
 * Trains a job; resolves with the run's summary (also in `<run>/summary.json`). Rejects with the
 * named errors of shared/errors.ts: JobConfigError or FlagError for bad input, PreemptedError
 * when `signal` stopped the run after a checkpoint, StoppedBySignalError when it stopped it
 * before training began, CallbackError or HookError when a callback or hook threw, and so on.
 */
export async function train(options: TrainOptions = {}): Promise<RunSummary> {
  const { coordinator } = resolveTrainOptions(options);
  return await runCoordinator(coordinator);
}
