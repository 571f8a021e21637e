// The coordinator: owns the run directory, membership, the step cursor, validation and
// checkpoints. It sets up (server, workers, ring, initial state), hands over to the training
// loop, then finishes (test metrics, final model, summary) and tears everything down.
import { readFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { loadDataset, type Dataset } from '../shared/data/dataset.js';
import { RingtrainError, WorkerFailedError } from '../shared/errors.js';
import { jobHash, jobToYaml, workerBounds } from '../shared/job.js';
import type { Job } from '../shared/job-schema.js';
import { componentLogger } from '../shared/logger.js';
import { decodeModelBlob } from '../shared/model-blob.js';
import { cursorOf } from '../shared/shard-plan.js';
import { CheckpointStore } from './checkpoint-store.js';
import { ControlServer } from './control-server.js';
import { EarlyStopping } from './early-stopping.js';
import { Evaluator, type SplitMetrics } from './evaluator.js';
import { LocalWorkers } from './local-workers.js';
import { Membership, type Generation } from './membership.js';
import { ProgressReporter } from './progress-reporter.js';
import { RunDirectory } from './run-directory.js';
import { trainLoop, type LoopResult } from './training-loop.js';
import { UserHooks } from './user-hooks.js';

export interface CoordinatorOptions {
  job: Job;
  /** Where the job came from, for messages. */
  jobSource: string;
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Spawn this many local workers (embedded mode); 0 = wait for workers to join from elsewhere. */
  localWorkers: number;
  /** GPU index per local worker; empty for none. */
  gpus: number[];
  /** Explicit run directory (`--out`). */
  outDir?: string;
  /** Run directory to resume (`--resume`). */
  resumeDir?: string;
  runsRoot?: string;
  /** Stop this run after global step K, checkpointing there (not part of the job: --resume goes on). */
  stopAtStep?: number;
  /** @default 120000 */
  joinTimeoutMs?: number;
  /** @default 300000 */
  stepTimeoutMs?: number;
  reporter?: ProgressReporter;
  /** Aborting stops the run at the next step boundary (SIGINT/SIGTERM). */
  signal?: AbortSignal;
}

export interface RunSummary extends Record<string, unknown> {
  runDir: string;
  worldSize: number;
  steps: number;
  test: SplitMetrics;
}

export async function runCoordinator(options: CoordinatorOptions): Promise<RunSummary> {
  const { job } = options;
  const logger = componentLogger('coordinator');
  const reporter = options.reporter ?? new ProgressReporter();
  const hash = jobHash(job);
  // Validate everything local before any process starts: dataset, hooks, run directory.
  const dataset = loadDataset(job);
  const hooks = await UserHooks.load(job.hooks);
  // Bind before creating the run directory, so a busy port leaves nothing behind.
  let membership: Membership | undefined;
  const server = await ControlServer.start({ host: options.host, port: options.port, logger, onSession: (s) => (membership !== undefined ? membership.offer(s) : s.abort('coordinator is starting')) });
  const runDir = await openRunDirectory(options).catch(async (error: unknown) => {
    await server.close();
    throw error;
  });
  const checkpoints = new CheckpointStore(runDir.checkpointsDir, { keep: job.checkpoint.keep, jobHash: hash, logger });
  membership = new Membership(job, hash, runDir.path, logger);
  // Where to find this coordinator (tests, scripts and operators read it).
  await writeFileAtomic(path.join(runDir.path, 'coordinator.json'), JSON.stringify({ host: server.host, port: server.port, pid: process.pid, hostname: os.hostname() }));
  const worldSize = options.localWorkers > 0 ? options.localWorkers : workerBounds(job).max;
  const abort = new AbortController();
  options.signal?.addEventListener('abort', () => abort.abort());
  const workers = options.localWorkers > 0 ? new LocalWorkers({ count: options.localWorkers, coordinatorAddress: server.localAddress, gpus: options.gpus, logger, onExit: (i, code, sig) => abort.abort(new WorkerFailedError(i, `process exited (code ${code ?? '-'}, signal ${sig ?? '-'})`)) }) : undefined;
  const killOnExit = (): void => workers?.killAllNow();
  process.once('exit', killOnExit);
  let generation: Generation | undefined;
  try {
    reporter.note(`ringtrain: run ${runDir.path}`);
    if (workers === undefined) reporter.note(`coordinator listening on ${server.host}:${server.port}, waiting for ${worldSize} workers`);
    workers?.start();
    const sessions = await membership.waitForWorkers(worldSize, options.joinTimeoutMs ?? 120_000, abort.signal);
    generation = await membership.formRing(sessions, dataset.hash, options.joinTimeoutMs ?? 120_000);
    const stepTimeoutMs = options.stepTimeoutMs ?? 300_000;
    const evaluator = new Evaluator(stepTimeoutMs);
    const monitor = job.validation.earlyStopping;
    const earlyStopping = monitor === undefined ? undefined : new EarlyStopping(monitor);
    const startStep = await restoreState(generation, checkpoints, earlyStopping, options.resumeDir !== undefined, reporter);
    reporter.note(`${generation.members.length} workers (${generation.members[0]?.backend ?? '?'} backend), ${generation.paramCount.toLocaleString('en-US')} parameters, ${dataset.train.count}/${dataset.validation.count}/${dataset.test.count} train/validation/test samples${startStep > 0 ? `, resuming at step ${startStep}` : ''}`);
    await hooks.call('onTrainBegin', { job, worldSize: generation.members.length, startStep, runDir: runDir.path });
    let requestId = 1;
    const gen = generation;
    const loop = await raceAbort(
      trainLoop(
        {
          job, dataset, generation: gen, runDir, checkpoints, evaluator, earlyStopping, hooks, reporter, logger, stepTimeoutMs,
          stopAtStep: options.stopAtStep,
          checkpoint: async (nextStep, metrics) => {
            const state = await leader(gen).session.fetchBlob(requestId++, 'state', stepTimeoutMs);
            const cursor = cursorOf(nextStep, dataset.train.count, job.training.batchSize);
            const info = await checkpoints.save({ step: nextStep, ...cursor, state, metrics, extra: { earlyStopping: earlyStopping?.exportState() ?? null } });
            await checkpoints.prune();
            await hooks.call('onCheckpoint', { step: nextStep, dir: info.dir, metrics });
          },
        },
        startStep,
      ),
      abort.signal,
    );
    const summary = await finish(gen, dataset, evaluator, runDir, loop, { job, hash, reporter, hooks, requestId, stepTimeoutMs, startStep });
    for (const member of gen.members) member.session.shutdown('training complete');
    return summary;
  } catch (error) {
    for (const member of generation?.members ?? []) member.session.shutdown(`job failed: ${error instanceof Error ? error.message : String(error)}`);
    throw error;
  } finally {
    await workers?.stopAll();
    process.removeListener('exit', killOnExit);
    await server.close();
    await runDir.close();
  }
}

async function openRunDirectory(options: CoordinatorOptions): Promise<RunDirectory> {
  if (options.resumeDir !== undefined) return RunDirectory.open(options.resumeDir);
  const runDir = await RunDirectory.create({ name: options.job.name, ...(options.outDir !== undefined ? { explicitDir: options.outDir } : {}), ...(options.runsRoot !== undefined ? { root: options.runsRoot } : {}) });
  await runDir.writeJob(jobToYaml(options.job));
  return runDir;
}

function leader(generation: Generation): Generation['members'][number] {
  const member = generation.members[0];
  if (member === undefined) throw new RingtrainError('the ring has no members');
  return member;
}

/** On resume, loads the newest valid checkpoint into every rank; returns the step to start at. */
async function restoreState(generation: Generation, checkpoints: CheckpointStore, earlyStopping: EarlyStopping | undefined, resuming: boolean, reporter: ProgressReporter): Promise<number> {
  if (!resuming) return 0;
  const latest = await checkpoints.loadLatestValid();
  if (latest === undefined) {
    reporter.note('no valid checkpoint to resume from; starting from step 0');
    return 0;
  }
  for (const warning of latest.warnings) reporter.note(`warning: ${warning}`);
  const extra = (await readExtra(latest.info.dir)) ?? {};
  const esState = extra['earlyStopping'];
  if (earlyStopping !== undefined && esState !== null && typeof esState === 'object') earlyStopping.importState(esState as Record<string, number>);
  const requestId = 1_000_000;
  for (const member of generation.members) member.session.sendState(requestId, latest.state);
  await Promise.all(generation.members.map((m) => m.session.waitAck(requestId, 120_000)));
  reporter.note(`resumed from checkpoint ${latest.info.dir}`);
  return latest.info.step;
}

async function readExtra(dir: string): Promise<Record<string, unknown> | undefined> {
  const manifest = JSON.parse(await readFile(`${dir}/manifest.json`, 'utf8')) as { extra?: Record<string, unknown> };
  return manifest.extra;
}

async function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new RingtrainError('run aborted');
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason instanceof Error ? signal.reason : new RingtrainError('run aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

interface FinishContext {
  job: Job;
  hash: string;
  reporter: ProgressReporter;
  hooks: UserHooks;
  requestId: number;
  stepTimeoutMs: number;
  startStep: number;
}

/** Final metrics on every split, the final model, and summary.json. */
async function finish(generation: Generation, dataset: Dataset, evaluator: Evaluator, runDir: RunDirectory, loop: LoopResult, ctx: FinishContext): Promise<RunSummary> {
  const train = await evaluator.evaluate(generation, 'train', dataset.train.count);
  const validation = await evaluator.evaluate(generation, 'validation', dataset.validation.count);
  const test = await evaluator.evaluate(generation, 'test', dataset.test.count);
  ctx.reporter.final('test', test);
  const model = decodeModelBlob(await leader(generation).session.fetchBlob(ctx.requestId + 1, 'model', ctx.stepTimeoutMs));
  await runDir.writeModel({ 'model.json': model.modelJson, 'weights.bin': model.weights });
  const summary: RunSummary = {
    name: ctx.job.name,
    jobHash: ctx.hash,
    runDir: runDir.path,
    worldSize: generation.members.length,
    epochs: ctx.job.training.epochs,
    steps: loop.finalStep,
    stepsThisRun: loop.stepsRun,
    resumedFromStep: ctx.startStep,
    globalBatchSize: ctx.job.training.batchSize,
    samplesPerSecond: loop.trainSeconds > 0 ? loop.trainSamples / loop.trainSeconds : 0,
    trainSeconds: loop.trainSeconds,
    stoppedEarly: loop.stoppedEarly,
    skippedSteps: loop.skippedSteps,
    train: train ?? {},
    validation: validation ?? {},
    test: test ?? {},
    workers: generation.members.map((m) => ({ rank: m.rank, host: m.session.hello.host, pid: m.session.hello.pid, gpuIndex: m.session.hello.gpuIndex, backend: m.backend })),
    recoveries: 0,
    events: [],
    coordinatorHost: os.hostname(),
    finishedAt: new Date().toISOString(),
  };
  await runDir.writeSummary(summary);
  await ctx.hooks.call('onTrainEnd', { summary });
  ctx.reporter.note(`run directory: ${runDir.path}`);
  return summary;
}
