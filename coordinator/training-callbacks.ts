// Keras-style callbacks, run in the coordinator's process (the caller's, for train()): the
// training loop emits an event at fixed points, and each callback may stop the run or change the
// learning rate through the event. The job file's hooks (user-hooks.ts) are one more set of
// callbacks that only observe.
//
// Invariants:
// - Callbacks run one at a time, in the order given, and the loop waits for them (a returned
//   promise is awaited) before it goes on; learning-rate changes are persisted before it goes on.
// - stop() takes effect at the next step boundary where no order has gone out ahead: the loop
//   checkpoints there and ends the run as stopped by a callback (summary.json stoppedByCallback).
import type { Job } from '../shared/job-schema.js';
import { CallbackError, RingtrainError } from '../shared/errors.js';
import type { LearningRates } from './loop/learning-rates.js';
import type { RunSummary } from './run/run-summary.js';

/** What every callback receives. */
export interface TrainingEvent {
  /** The epoch (0-based) of the last step done, or of the first step at onTrainBegin. */
  epoch: number;
  /** Steps done so far in the run (global steps, counted from the run's start). */
  step: number;
  /** Metrics known at this point: `train.loss`, and `validation.*` after a validation. */
  metrics: Readonly<Record<string, number>>;
  /** The learning rate the next step trains at. */
  learningRate: number;
  /** The run directory. */
  runDir: string;
  /** Stop training at the next step boundary, with a checkpoint; the run then finishes normally. */
  stop(): void;
  /**
   * Train at `learningRate` from the next step whose order has not gone out (replacing the job's
   * schedule from then on). Exact at epoch, validation and checkpoint boundaries; from onStep,
   * the step after the next may be the first (the loop sends some orders one step ahead).
   */
  setLearningRate(learningRate: number): void;
}

export interface TrainBeginEvent extends TrainingEvent {
  job: Job;
  worldSize: number;
  /** The step the run starts (or resumes) at. */
  startStep: number;
}

export interface CheckpointEvent extends TrainingEvent {
  /** The checkpoint's directory. */
  dir: string;
}

export interface TrainEndEvent extends TrainingEvent {
  summary: RunSummary;
}

type Handler<E> = (event: E) => void | Promise<void>;

/** Callbacks for train(); every one is optional. */
export interface TrainingCallbacks {
  onTrainBegin?: Handler<TrainBeginEvent>;
  /** After every `onStepEvery`-th step (see TrainOptions.onStepEvery), with the step's loss as `train.loss`. */
  onStep?: Handler<TrainingEvent>;
  onValidationEnd?: Handler<TrainingEvent>;
  onCheckpoint?: Handler<CheckpointEvent>;
  onEpochEnd?: Handler<TrainingEvent>;
  onTrainEnd?: Handler<TrainEndEvent>;
}

export type CallbackName = keyof TrainingCallbacks;

/** The fields the loop gives for each callback; the runner adds the rest. */
type EventFields<K extends CallbackName> = Omit<
  Parameters<NonNullable<TrainingCallbacks[K]>>[0],
  'learningRate' | 'runDir' | 'stop' | 'setLearningRate'
>;

/** A set of callbacks and, for messages, where it came from. */
export interface CallbackSource {
  callbacks: TrainingCallbacks;
  /** Set for the job file's hooks, which report their own errors (HookError). */
  reportsOwnErrors?: boolean;
}

export class CallbackRunner {
  private stopWanted = false;

  constructor(
    private readonly sources: readonly CallbackSource[],
    readonly learningRates: LearningRates,
    private readonly runDir: string,
    /** onStep runs after every this-many steps. */
    private readonly onStepEvery: number,
  ) {}

  /** True once a callback called stop(). */
  get stopRequested(): boolean {
    return this.stopWanted;
  }

  /** True when onStep is due after `stepsDone` steps. */
  stepDue(stepsDone: number): boolean {
    return this.onStepEvery > 0 && stepsDone % this.onStepEvery === 0 && this.has('onStep');
  }

  has(name: CallbackName): boolean {
    return this.sources.some((s) => s.callbacks[name] !== undefined);
  }

  /** Calls `name` on every set that has it, in order; then persists learning-rate changes. */
  async emit<K extends CallbackName>(name: K, fields: EventFields<K>): Promise<void> {
    for (const source of this.sources) {
      const handler = source.callbacks[name] as Handler<TrainingEvent> | undefined;
      if (handler === undefined) continue;
      const event: TrainingEvent = {
        ...fields,
        metrics: Object.freeze({ ...fields.metrics }),
        learningRate: this.learningRates.current,
        runDir: this.runDir,
        stop: () => {
          this.stopWanted = true;
        },
        setLearningRate: (lr) => this.learningRates.set(lr),
      };
      try {
        await handler.call(source.callbacks, event);
      } catch (cause) {
        if (source.reportsOwnErrors === true && cause instanceof RingtrainError) throw cause;
        throw new CallbackError(name, { cause });
      }
    }
    await this.learningRates.flush();
  }
}
