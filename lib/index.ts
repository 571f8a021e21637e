// The library's entry point: `import { train, ... } from 'ringtrain'`. Everything a program
// needs to train from code, with its types; nothing else of the package is public.
export { train } from './train.js';
export type { ProgressStyle, TrainOptions } from './train-options.js';
export type { ProgressEvent } from '../coordinator/run/progress-events.js';
export { ReduceLROnPlateau, type ReduceLROnPlateauOptions } from './reduce-lr-on-plateau.js';
export type {
  CheckpointEvent,
  TrainBeginEvent,
  TrainEndEvent,
  TrainingCallbacks,
  TrainingEvent,
} from '../coordinator/training-callbacks.js';
export type { RunSummary } from '../coordinator/run/run-summary.js';
export type { SplitMetrics } from '../coordinator/loop/evaluator.js';
export type { Job, JobInput } from '../shared/job-schema.js';
export {
  BackendUnavailableError,
  CallbackError,
  CheckpointError,
  CollectiveError,
  CoordinatorUnreachableError,
  DatasetError,
  FlagError,
  HookError,
  JobConfigError,
  JoinRejectedError,
  ModelTooLargeError,
  NotEnoughWorkersError,
  OptimizerStateError,
  ModelLoadError,
  OutOfMemoryError,
  PortInUseError,
  PreemptedError,
  RingtrainError,
  StorageFullError,
  StoppedBySignalError,
  TrainingDivergedError,
  WelcomeTimeoutError,
  WorkerFailedError,
  type StopSignal,
  type WorkerIdentity,
} from '../shared/errors.js';
export { loadModel, readMetadata, resolveModelDir, type LoadedModel, type ModelMetadata } from './model-io.js';
export { readModelData, type ModelData } from './model-data.js';
export { describePredictions, evaluateModel, predictOutputs, type Prediction } from './model-predict.js';
