// One rank's training state and the work of a step, as plain methods over flat buffers:
// local gradient -> ring all-reduce -> divide by the global count -> clip -> optimizer -> write back.
// The flat parameter buffer is the source of truth; the model's variables are a copy of it.
import type { StepOrder__Output } from '../../proto/generated/ringtrain/v1/StepOrder.js';
import type { StepReport } from '../../proto/generated/ringtrain/v1/StepReport.js';
import { asDataSource, type DataSource } from '../../shared/data/data-source.js';
import { SPLIT_NAMES, type Dataset, type SplitName } from '../../shared/data/dataset.js';
import { CheckpointError } from '../../shared/errors.js';
import { decodeIndices } from '../../shared/index-codec.js';
import { rankSlices } from '../../shared/shard-plan.js';
import type { Job } from '../../shared/job-schema.js';
import { rogueStep } from './rogue-fault.js';
import { GradientOutlierError, gradientOutliers, meanGradientNorm } from './gradient-outliers.js';
import { decodeTrainState, encodeTrainState, type TrainCursor } from '../../shared/train-state.js';
import type { CollectiveStats } from '../collectives/collective-stats.js';
import { allFinite, averageWithNorm, clipByGlobalNorm, hashParams } from './gradient-ops.js';
import { createOptimizer, slotBuffers, type FlatOptimizer } from './optimizers/optimizer.js';
import { OptimizerArena } from './optimizers/optimizer-kernels.js';
import { EVAL_BATCH_SIZE, type Replica } from './replica.js';

/**
 * The collective a step runs: in-place sum over all ranks. `collective` numbers the all-reduces
 * within one step (0, 1, ...; strictly increasing): with syncBatchNorm the BatchNorm statistics
 * take the first ones and the gradient comes last. @default 0
 * Resolves with how long this rank waited for its peers in it (see collective-stats.ts).
 */
export type AllReduce = (buffer: Float32Array, step: number, collective?: number) => Promise<CollectiveStats>;

export class TrainerReplica {
  readonly paramCount: number;
  private readonly params: Float32Array;
  /**
   * What one all-reduce sums: [0, paramCount) gradient sums, then `movingCount` BatchNorm moving
   * statistics × local sample count, then the loss sum and the sample count (the last two slots).
   */
  private readonly gradBuffer: Float32Array;
  /**
   * BatchNorm moving statistics averaged over ranks each step (weighted by sample count), so they
   * stay identical on every rank: 0 without BatchNorm, and with syncBatchNorm (identical anyway).
   */
  private readonly movingCount: number;
  /**
   * The BatchNorm moving statistics every rank last agreed on (all of them: the averaged ones, or
   * with syncBatchNorm the ones every rank computed alike). A step that is skipped or aborted puts
   * them back, since its forward pass moved them on this rank only.
   */
  private readonly moving: Float32Array;
  /** Scratch: this rank's own moving statistics after its forward pass, before averaging. */
  private readonly localMoving: Float32Array;
  /** One micro-batch's gradient sum; allocated once, only when accumulationSteps > 1. */
  private readonly microGrad: Float32Array | undefined;
  private readonly optimizer: FlatOptimizer;
  /** Where each step's slice and each evaluation's rows are gathered from. */
  private readonly dataset: DataSource;
  private readonly x: Float32Array;
  private readonly y: Float32Array;
  /** evaluate()'s rows, EVAL_BATCH_SIZE at a time; allocated at the first evaluation. */
  private evalX: Float32Array | undefined;
  private evalY: Float32Array | undefined;
  private cursor: TrainCursor = { step: 0, epoch: 0, batchInEpoch: 0 };
  /**
   * When this rank last finished work (a step, an evaluation, a state export): a step's idle time
   * counts from there, so validation and checkpoints between steps are not reported as idle.
   */
  private busyUntilMs: number | undefined;
  /**
   * Fault injection for tests and drills: RINGTRAIN_FAULT_NAN_STEPS="5,6" (or "all") makes this
   * rank's local gradient NaN at those steps, as a numerically broken batch would.
   */
  private readonly nanSteps = parseStepSet(process.env['RINGTRAIN_FAULT_NAN_STEPS']);
  /** Fault injection: RINGTRAIN_FAULT_SLOW_RANK="1:40" makes rank 1 compute 40 ms longer each step (a straggler). */
  private readonly slowdown = parseFaultPair(process.env['RINGTRAIN_FAULT_SLOW_RANK']);
  /**
   * Fault injection: RINGTRAIN_FAULT_BLOCK_STEP="2:8000" blocks every rank's thread for 8 s
   * inside step 2's compute, synchronously, as one huge kernel would: no timer or I/O of this
   * thread runs meanwhile (a long step, which must not be taken for a hang).
   */
  private readonly block = parseFaultPair(process.env['RINGTRAIN_FAULT_BLOCK_STEP']);
  /**
   * Fault injection: RINGTRAIN_FAULT_SCALE_GRADIENT="2:-10" multiplies the local gradient of the
   * worker whose first rank was 2 by −10 every step (a poisoned contribution, for robust mode).
   */
  private readonly scaleGradient = parseScaleFault(process.env['RINGTRAIN_FAULT_SCALE_GRADIENT']);
  /** This replica's rank in the current generation (set by the runtime on each Welcome). */
  rank = -1;
  /** Ranks in the current generation (set by the runtime on each Welcome). */
  worldSize = 1;
  /** The rank of this worker's first generation (what the injected faults name). */
  private firstRank = -1;

  constructor(
    private readonly job: Job,
    data: DataSource | Dataset,
    private readonly replica: Replica,
  ) {
    const dataset = asDataSource(data);
    this.dataset = dataset;
    this.paramCount = replica.paramCount;
    this.movingCount = replica.needsCollectives ? 0 : replica.nonTrainableCount;
    const gradFloats = this.paramCount + this.movingCount + 2;
    // Parameters, gradient and optimizer slots in one WebAssembly memory, so the update runs as
    // SIMD in place (optimizer-kernels.ts); plain arrays where that is unavailable.
    const arena = OptimizerArena.create([
      this.paramCount,
      gradFloats,
      ...Array<number>(slotBuffers(job.optimizer)).fill(this.paramCount),
    ]);
    this.params = arena?.allocate(this.paramCount) ?? new Float32Array(this.paramCount);
    replica.readParams(this.params);
    this.moving = new Float32Array(replica.nonTrainableCount);
    this.localMoving = new Float32Array(this.movingCount);
    if (this.moving.length > 0) replica.readNonTrainable(this.moving);
    this.gradBuffer = arena?.allocate(gradFloats) ?? new Float32Array(gradFloats);
    this.microGrad = job.training.accumulationSteps > 1 ? new Float32Array(this.paramCount) : undefined;
    this.optimizer = createOptimizer(job.optimizer, this.paramCount, arena);
    // Gather buffers sized for the largest slice this rank can get (the whole global batch).
    this.x = new Float32Array(job.training.batchSize * dataset.featureSize);
    this.y = new Float32Array(job.training.batchSize * dataset.labelSize);
  }

  /** Runs one synchronous step; every rank returns the same loss and parameters. */
  async step(order: StepOrder__Output, allReduce: AllReduce): Promise<StepReport> {
    const receivedMs = performance.now();
    const idleMs = this.busyUntilMs === undefined ? 0 : receivedMs - this.busyUntilMs;
    const indices = decodeIndices(order.sampleIndices, 'StepOrder.sampleIndices');
    // Rows read ahead (asynchronously, when this order came) are used once they are in.
    await this.dataset.settle?.('train', indices);
    const count = this.gather('train', indices, this.x, this.y);
    const grad = this.gradBuffer;
    const local = await this.afterFailure(() => this.localGradient(count, order.step, indices, allReduce));
    const lossSlot = this.paramCount + this.movingCount;
    grad[lossSlot] = local.lossSum;
    grad[lossSlot + 1] = local.count;
    if (this.nanSteps.has(order.step)) grad[0] = Number.NaN;
    if (this.scaleGradient !== undefined && this.scaleGradient.rank === this.firstRank)
      for (let i = 0; i < this.paramCount; i++) grad[i] = (grad[i] as number) * this.scaleGradient.factor;
    let gradientCollective = local.collectives;
    if (this.job.robust !== undefined)
      await this.afterFailure(() =>
        this.checkGradientNorms(
          order.step,
          local.count,
          gradientCollective++,
          allReduce,
          this.job.robust!.gradientNormFactor,
        ),
      );
    if (this.slowdown?.at === this.rank) await new Promise((resolve) => setTimeout(resolve, this.slowdown?.ms));
    if (this.block?.at === order.step) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, this.block.ms);
    const computedMs = performance.now();

    // Only the gradient collective is timed as all-reduce (and its wait reported): syncBatchNorm's
    // collectives run inside the forward/backward pass, so they count as compute.
    const reduced = await this.afterFailure(() => allReduce(grad, order.step, gradientCollective));
    const reducedMs = performance.now();

    const globalCount = grad[lossSlot + 1] ?? 0;
    const loss = (grad[lossSlot] ?? 0) / globalCount;
    const g = grad.subarray(0, this.paramCount);
    const norm = averageWithNorm(g, globalCount);
    // Decided on the reduced buffer, so every rank skips or applies alike. A skipped step also
    // puts back the BatchNorm statistics its forward pass moved, so nothing non-finite sticks.
    const finite = Number.isFinite(norm) && allFinite(grad.subarray(this.paramCount, lossSlot));
    if (finite) this.agreeOnMoving(globalCount);
    else this.restoreAgreedMoving();
    const gradNorm = finite
      ? this.job.optimizer.clipNorm > 0
        ? clipByGlobalNorm(g, this.job.optimizer.clipNorm, norm)
        : norm
      : Number.NaN;
    if (finite) {
      this.optimizer.apply(this.params, g, order.learningRate);
      this.replica.writeParams(this.params);
    }
    const doneMs = performance.now();
    this.cursor = { step: order.step + 1, epoch: order.epoch, batchInEpoch: order.batchInEpoch + 1 };
    this.busyUntilMs = doneMs;
    return {
      generation: order.generation,
      step: order.step,
      loss,
      localCount: count,
      globalCount: Math.round(globalCount),
      timings: {
        computeMs: computedMs - receivedMs,
        allreduceMs: reducedMs - computedMs,
        allreduceWaitMs: reduced.waitMs,
        optimizerMs: doneMs - reducedMs,
        idleMs,
      },
      skipped: !finite,
      paramHash: order.wantParamHash ? hashParams(this.params) : '',
      gradNorm,
    };
  }

  /** Takes the rank and world size of a new generation. */
  joinGeneration(rank: number, worldSize: number): void {
    this.rank = rank;
    this.worldSize = worldSize;
    if (this.firstRank < 0) this.firstRank = rank;
  }

  /**
   * Robust mode: gathers every rank's mean-gradient norm (an all-reduce of a one-hot vector) and
   * aborts the step, naming them, when some are outliers (gradient-outliers.ts).
   */
  private async checkGradientNorms(
    step: number,
    count: number,
    collective: number,
    allReduce: AllReduce,
    factor: number,
  ): Promise<void> {
    const norms = new Float32Array(this.worldSize);
    norms[this.rank] = meanGradientNorm(this.gradBuffer.subarray(0, this.paramCount), count);
    await allReduce(norms, step, collective);
    const outliers = gradientOutliers(norms, factor);
    if (outliers.length > 0) throw new GradientOutlierError(outliers, Array.from(norms), factor);
  }

  /** Steps this replica's parameters include (its cursor). */
  get completedSteps(): number {
    return this.cursor.step;
  }

  /** Loss and metric sums over the given samples of a split. */
  evaluate(
    splitName: string,
    sampleIndices: Uint8Array,
  ): { count: number; lossSum: number; metricSums: Record<string, number> } {
    if (!SPLIT_NAMES.includes(splitName as SplitName)) throw new RangeError(`no split named "${splitName}"`);
    const split = splitName as SplitName;
    const indices = decodeIndices(sampleIndices, 'EvalOrder.sampleIndices');
    // One forward pass's worth of rows at a time, into buffers kept for the next evaluation:
    // a large split costs no more memory than a small one.
    this.evalX ??= new Float32Array(EVAL_BATCH_SIZE * this.dataset.featureSize);
    this.evalY ??= new Float32Array(EVAL_BATCH_SIZE * this.dataset.labelSize);
    const sums = { count: indices.length, lossSum: 0, metricSums: {} as Record<string, number> };
    for (let start = 0; start < indices.length; start += EVAL_BATCH_SIZE) {
      const rows = indices.subarray(start, start + EVAL_BATCH_SIZE);
      const count = this.gather(split, rows, this.evalX, this.evalY);
      const part = this.replica.evaluate(this.evalX, this.evalY, count, this.job.metrics);
      sums.lossSum += part.lossSum;
      for (const [name, value] of Object.entries(part.metricSums))
        sums.metricSums[name] = (sums.metricSums[name] ?? 0) + value;
    }
    this.markBusyUntilNow();
    return sums;
  }

  exportState(): Uint8Array {
    const nonTrainable = new Float32Array(this.replica.nonTrainableCount);
    this.replica.readNonTrainable(nonTrainable);
    // The injected rogue (rogue-fault.ts) lies until it has run a step of its own.
    const lie = rogueStep !== undefined && this.cursor.step === 0;
    const state = encodeTrainState({
      cursor: lie ? { step: rogueStep ?? 0, epoch: 0, batchInEpoch: 0 } : this.cursor,
      params: lie ? new Float32Array(this.params.length) : this.params,
      nonTrainable,
      optimizer: this.optimizer.exportState(),
    });
    this.markBusyUntilNow();
    return state;
  }

  /** Work other than a step just ended (see busyUntilMs). */
  markBusyUntilNow(): void {
    if (this.busyUntilMs !== undefined) this.busyUntilMs = performance.now();
  }

  /** Loads a state from a checkpoint or another rank; lengths must match this model. */
  importState(bytes: Uint8Array, source: string): void {
    const state = decodeTrainState(bytes, source);
    if (state.params.length !== this.paramCount) {
      throw new CheckpointError(source, `holds ${state.params.length} parameters, this model has ${this.paramCount}`);
    }
    this.params.set(state.params);
    this.replica.writeParams(this.params);
    if (state.nonTrainable.length === this.replica.nonTrainableCount) {
      this.replica.writeNonTrainable(state.nonTrainable);
      this.moving.set(state.nonTrainable);
    }
    this.optimizer.importState(state.optimizer);
    this.cursor = state.cursor;
  }

  /**
   * Gradient of the loss SUM over this rank's gathered slice into gradBuffer[0..paramCount).
   * With accumulationSteps = k the slice is cut into k contiguous micro-batches (rankSlices: sizes
   * differ by at most 1) whose gradient sums are added up; sums are additive, so this equals the
   * one-pass gradient up to float rounding, while only a micro-batch's activations are live.
   * With syncBatchNorm the BatchNorm statistics are all-reduced mid-pass (no accumulation then;
   * job validation forbids the combination); `collectives` says how many all-reduces that took.
   */
  private async localGradient(
    count: number,
    step: number,
    indices: Uint32Array,
    allReduce: AllReduce,
  ): Promise<{ lossSum: number; count: number; collectives: number }> {
    const fs = this.dataset.featureSize;
    const ls = this.dataset.labelSize;
    const grad = this.gradBuffer;
    const x = this.x.subarray(0, count * fs);
    const y = this.y.subarray(0, count * ls);
    if (this.replica.needsCollectives) {
      let collectives = 0;
      const collective = async (buffer: Float32Array): Promise<void> => {
        await allReduce(buffer, step, collectives++);
      };
      const local = await this.replica.computeGradientsSynced(x, y, count, step, indices, grad, collective);
      return { ...local, collectives };
    }
    if (this.microGrad === undefined || count <= 1) {
      const local = this.replica.computeGradients(x, y, count, step, indices, grad);
      this.stageMoving(count);
      return { ...local, collectives: 0 };
    }
    const micro = this.microGrad;
    grad.fill(0, 0, this.paramCount);
    let lossSum = 0;
    for (const { start, end } of rankSlices(count, this.job.training.accumulationSteps)) {
      if (end === start) continue;
      const microX = x.subarray(start * fs, end * fs);
      const microY = y.subarray(start * ls, end * ls);
      lossSum += this.replica.computeGradients(
        microX,
        microY,
        end - start,
        step,
        indices.subarray(start, end),
        micro,
      ).lossSum;
      for (let i = 0; i < this.paramCount; i++) grad[i] = (grad[i] as number) + (micro[i] as number);
    }
    this.stageMoving(count);
    return { lossSum, count, collectives: 0 };
  }

  /** Runs `work`; if it throws (an aborted collective), this rank's moving statistics go back first. */
  private async afterFailure<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      this.restoreAgreedMoving();
      throw error;
    }
  }

  private restoreAgreedMoving(): void {
    if (this.moving.length > 0) this.replica.writeNonTrainable(this.moving);
  }

  /** Puts this rank's moving statistics × its sample count after the gradient (a rank without samples adds 0). */
  private stageMoving(count: number): void {
    if (this.movingCount === 0) return;
    this.replica.readNonTrainable(this.localMoving);
    const grad = this.gradBuffer;
    for (let i = 0; i < this.movingCount; i++) grad[this.paramCount + i] = (this.localMoving[i] as number) * count;
  }

  /**
   * Every rank's moving statistics become Σ count_r · moving_r / Σ count_r: for the moving mean,
   * exactly the update a global-batch mean would give; for the variance, the mean of the ranks'.
   */
  private agreeOnMoving(globalCount: number): void {
    // syncBatchNorm: every rank moved its statistics alike; they are the agreed ones now.
    if (this.replica.needsCollectives && this.moving.length > 0) this.replica.readNonTrainable(this.moving);
    if (this.movingCount === 0 || !(globalCount > 0)) return;
    const grad = this.gradBuffer;
    for (let i = 0; i < this.movingCount; i++) this.moving[i] = (grad[this.paramCount + i] as number) / globalCount;
    this.replica.writeNonTrainable(this.moving);
  }

  /** Copies the rows named by `indices` into x/y; returns the row count. */
  /** Rows `indices` of `split` into x/y from the data source (in memory, packed or a module). */
  private gather(split: SplitName, indices: Uint32Array, x: Float32Array, y: Float32Array): number {
    this.dataset.fill(split, indices, x, y);
    return indices.length;
  }

  /** The next step's rows, already ordered (sent one step ahead): the source may start reading them. */
  readAhead(order: StepOrder__Output): void {
    if (this.dataset.readAhead === undefined) return;
    this.dataset.readAhead('train', decodeIndices(order.sampleIndices, 'StepOrder.sampleIndices'));
  }
}

/** "5,6" -> {5, 6}; "all" -> every step; unset -> none. */
function parseStepSet(text: string | undefined): { has(step: number): boolean } {
  if (text === undefined || text.trim() === '') return { has: () => false };
  if (text.trim() === 'all') return { has: () => true };
  const steps = new Set(
    text
      .split(',')
      .map((part) => Number(part.trim()))
      .filter((n) => Number.isInteger(n) && n >= 0),
  );
  return { has: (step) => steps.has(step) };
}

/** "AT:MS" (a rank or a step, and milliseconds) of a fault-injection variable. */
function parseScaleFault(text: string | undefined): { rank: number; factor: number } | undefined {
  const match = /^(\d+):(-?\d+(?:\.\d+)?)$/.exec(text?.trim() ?? '');
  return match === null ? undefined : { rank: Number(match[1]), factor: Number(match[2]) };
}

function parseFaultPair(text: string | undefined): { at: number; ms: number } | undefined {
  const match = /^(\d+):(\d+)$/.exec(text?.trim() ?? '');
  return match === null ? undefined : { at: Number(match[1]), ms: Number(match[2]) };
}
