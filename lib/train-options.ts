// train()'s options, named like the CLI's flags (`--batch-size` is batchSize), and their
// resolution into a job and coordinator options: the one place both the library and the CLI
// turn "what the user asked for" into a run. Every default is stated here with @default.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { CoordinatorOptions } from '../coordinator/coordinator.js';
import { LiveProgressView } from '../coordinator/run/live-progress-view.js';
import {
  JsonProgressView,
  PlainProgressView,
  ProgressReporter,
  QuietProgressView,
  type ProgressView,
} from '../coordinator/run/progress-reporter.js';
import type { TrainingCallbacks } from '../coordinator/training-callbacks.js';
import { detectGpus, parseGpus } from '../shared/gpus.js';
import { FlagError } from '../shared/errors.js';
import { parseHttpAddress, type HttpAddress } from '../shared/http-address.js';
import { loadJob, resolveJob, type JobOverrides } from '../shared/job.js';
import type { Job, JobInput } from '../shared/job-schema.js';
import { resolveSecurity } from '../shared/security/job-security.js';

export interface TrainOptions {
  /**
   * A job file (YAML or JSON), or a job object in the job file's shape (its relative paths
   * resolve against the current directory).
   * @default the resumed run's job.yaml with `resume`, else the built-in MNIST MLP job
   */
  job?: string | JobInput;
  /** Local worker processes (`--workers`); overrides the job's `workers`. */
  workers?: number;
  /** One worker per GPU (`--gpus`): 'all', a count, '0,2', or a list of indices. */
  gpus?: string | readonly number[];
  /** Overrides training.epochs (`--epochs`). */
  epochs?: number;
  /** Overrides training.batchSize, the global batch (`--batch-size`). */
  batchSize?: number;
  /** Overrides seed (`--seed`). */
  seed?: number;
  /** Overrides optimizer.learningRate (`--learning-rate`). */
  learningRate?: number;
  /** TensorFlow.js backend of the workers (`--backend`); overrides the job's. */
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  /** Stop after global step K, checkpointing there (`--max-steps`); `resume` continues. */
  maxSteps?: number;
  /** The run directory (`--out`). @default `<runsDir>/<timestamp>-<name>` */
  out?: string;
  /** Parent of timestamped run directories (`--runs-dir`). @default 'runs' */
  runsDir?: string;
  /** Continue the run in this directory from its newest valid checkpoint (`--resume`). */
  resume?: string;
  /** With `out`: continue the run there if it holds one, else start it there (`--resume-if-exists`). */
  resumeIfExists?: boolean;
  /** Coordinator port, 0 = any free port (`--port`). @default 0 */
  port?: number;
  /**
   * Coordinator bind address (`--host`).
   * @default '127.0.0.1'; in cluster mode with TLS, '0.0.0.0'
   */
  host?: string;
  /** PEM CA of the job's mutual TLS (`--tls-ca`). @default RINGTRAIN_TLS_CA, else the job's security.ca */
  tlsCa?: string;
  /** PEM certificate the coordinator (and its local workers) present (`--tls-cert`). @default RINGTRAIN_TLS_CERT, else security.cert */
  tlsCert?: string;
  /** PEM private key of that certificate (`--tls-key`). @default RINGTRAIN_TLS_KEY, else security.key */
  tlsKey?: string;
  /** File holding the job token every worker must present (`--token-file`). @default RINGTRAIN_TOKEN, else security.tokenFile */
  tokenFile?: string;
  /**
   * Serve Prometheus /metrics and the live dashboard on this port, or 'ADDR:PORT' (`--http`;
   * a bare port binds 127.0.0.1, 0 = any free port); overrides the job's `http:`.
   * @default the job's `http:`, else off
   */
  http?: number | string;
  /**
   * Like `ringtrain coordinator`: start no local workers and wait for `expectWorkers` (else the
   * job's `workers`) to join from elsewhere with `ringtrain worker --coordinator HOST:PORT`.
   * @default false
   */
  cluster?: boolean;
  /** Cluster mode: workers to wait for (`--expect-workers`); overrides the job's `workers`. */
  expectWorkers?: number;
  /** Cluster mode: seconds workers have to join (`--join-timeout`). @default 600 */
  joinTimeout?: number;
  /** Callbacks, called in order after the job file's hooks. */
  callbacks?: TrainingCallbacks | readonly TrainingCallbacks[];
  /**
   * onStep runs after every this-many steps (the throttle: each call holds up the coordinator
   * between two steps). 1 = after every step.
   * @default 10
   */
  onStepEvery?: number;
  /** Aborting stops the run at the next step boundary with a checkpoint, as SIGTERM does. */
  signal?: AbortSignal;
  /** Where the progress lines go. @default each line to process.stdout; false: nowhere */
  progress?: ((line: string) => void) | false;
  /**
   * How progress is shown: 'plain' lines (one per epoch, and one every 30 s of a long epoch),
   * 'live' (a progress bar on process.stdout, which must be a TTY; the CLI's choice on a
   * terminal), 'quiet' (the final line only) or 'json' (one JSON object per event).
   * @default 'plain'
   */
  progressStyle?: ProgressStyle;
}

export type ProgressStyle = 'plain' | 'live' | 'quiet' | 'json';

/** The options resolved: the job, where it came from, and the coordinator's options. */
export interface ResolvedTrain {
  coordinator: CoordinatorOptions;
  write: (line: string) => void;
}

/** Validates `options`, applies the auto-resume rule and reads the job (throws JobConfigError, FlagError). */
export function resolveTrainOptions(given: TrainOptions): ResolvedTrain {
  checkOptions(given);
  const write = writerOf(given.progress);
  const reporter = new ProgressReporter(progressView(given.progressStyle ?? 'plain', write));
  const options = withAutoResume(given, (line) => reporter.note(line));
  const gpus = options.cluster === true || options.gpus === undefined ? [] : gpuList(options.gpus);
  if (gpus.length > 0 && options.workers !== undefined && options.workers !== gpus.length)
    throw new FlagError(
      `workers ${options.workers}`,
      `disagrees with gpus ${String(options.gpus)} (${gpus.length} GPUs); give one of them`,
    );
  const workerCount =
    options.cluster === true ? options.expectWorkers : gpus.length > 0 ? gpus.length : options.workers;
  const { job, source } = resolveJobFor(options, workerCount);
  const local = typeof job.workers === 'number' ? job.workers : job.workers.max;
  const security = resolveSecurity(
    { ca: options.tlsCa, cert: options.tlsCert, key: options.tlsKey, tokenFile: options.tokenFile },
    process.env,
    job.security,
  );
  // Without TLS nothing listens beyond loopback unless asked to (README "Security model").
  const host = options.host ?? (options.cluster === true && security.tls !== undefined ? '0.0.0.0' : '127.0.0.1');
  const coordinator: CoordinatorOptions = {
    job,
    jobSource: source,
    host,
    security,
    port: options.port ?? 0,
    localWorkers: options.cluster === true ? 0 : local,
    gpus,
    reporter,
    callbacks: options.callbacks === undefined ? [] : [options.callbacks].flat(),
    ...(options.onStepEvery !== undefined ? { onStepEvery: options.onStepEvery } : {}),
    ...httpOf(options, job),
    ...(options.joinTimeout !== undefined ? { joinTimeoutMs: options.joinTimeout * 1000 } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.maxSteps !== undefined ? { stopAtStep: options.maxSteps } : {}),
    ...(options.out !== undefined ? { outDir: options.out } : {}),
    ...(options.resume !== undefined ? { resumeDir: options.resume } : {}),
    runsRoot: options.runsDir ?? 'runs',
  };
  return { coordinator, write };
}

/** The monitor's address: the `http` option over the job's `http:` (validated by the schema). */
function httpOf(options: TrainOptions, job: Job): { http?: HttpAddress } {
  const given = options.http ?? job.http;
  if (given === undefined) return {};
  const http = parseHttpAddress(given);
  if (http === undefined)
    throw new FlagError(
      options.http !== undefined ? `--http ${options.http}` : `http: ${given}`,
      'give a port (0 = any free port) or ADDR:PORT, e.g. 9464 or 0.0.0.0:9464',
    );
  return { http };
}

function progressView(style: ProgressStyle, write: (line: string) => void): ProgressView {
  switch (style) {
    case 'plain':
      return new PlainProgressView(write);
    case 'live':
      return new LiveProgressView(process.stdout);
    case 'quiet':
      return new QuietProgressView(write);
    case 'json':
      return new JsonProgressView(write);
  }
}

function writerOf(progress: TrainOptions['progress']): (line: string) => void {
  if (progress === false) return () => undefined;
  return progress ?? ((line) => process.stdout.write(`${line}\n`));
}

/** Integer options, checked as the CLI's parsers check its flags (the CLI's values pass again). */
function checkOptions(o: TrainOptions): void {
  const positive = { workers: o.workers, epochs: o.epochs, batchSize: o.batchSize, maxSteps: o.maxSteps };
  for (const [name, value] of Object.entries({
    ...positive,
    expectWorkers: o.expectWorkers,
    onStepEvery: o.onStepEvery,
  }))
    if (value !== undefined && (!Number.isInteger(value) || value <= 0))
      throw new FlagError(name, `must be a positive integer, got ${value}`);
  if (o.joinTimeout !== undefined && !(o.joinTimeout > 0))
    throw new FlagError('joinTimeout', `must be a positive number of seconds, got ${o.joinTimeout}`);
  if (o.seed !== undefined && (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 2 ** 31 - 1))
    throw new FlagError('seed', `must be an integer from 0 to ${2 ** 31 - 1}, got ${o.seed}`);
  if (o.learningRate !== undefined && !(Number.isFinite(o.learningRate) && o.learningRate > 0))
    throw new FlagError('learningRate', `must be a positive number, got ${o.learningRate}`);
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535))
    throw new FlagError('port', `must be an integer from 0 to 65535, got ${o.port}`);
  if (o.cluster !== true && o.expectWorkers !== undefined)
    throw new FlagError('expectWorkers', 'is for cluster mode; give cluster: true, or workers for local workers');
}

function gpuList(gpus: string | readonly number[]): number[] {
  return parseGpus(typeof gpus === 'string' ? gpus : gpus.join(','), detectGpus);
}

/**
 * `resumeIfExists` turns into `resume: out` when `out` already holds a run (its job.yaml,
 * written before any step), so one unchanged command line starts a run and, run again after a
 * crash or a pod restart, continues it.
 */
function withAutoResume(options: TrainOptions, write: (line: string) => void): TrainOptions {
  if (options.resumeIfExists !== true) return options;
  if (options.out === undefined)
    throw new FlagError('--resume-if-exists', 'needs --out DIR, the run directory to continue or start');
  if (options.resume !== undefined)
    throw new FlagError(
      '--resume-if-exists',
      `conflicts with --resume ${options.resume}; give --out DIR --resume-if-exists, or --resume DIR alone`,
    );
  if (!existsSync(path.join(options.out, 'job.yaml'))) return options;
  write(`ringtrain: ${options.out} holds a run; continuing it (--resume-if-exists)`);
  return { ...options, resume: options.out };
}

/** The job: the given file or object, else the resumed run's job.yaml, else the default job. */
function resolveJobFor(options: TrainOptions, workers: number | undefined): { job: Job; source: string } {
  const overrides: JobOverrides = {};
  if (workers !== undefined) overrides.workers = workers;
  if (options.epochs !== undefined) overrides.epochs = options.epochs;
  if (options.batchSize !== undefined) overrides.batchSize = options.batchSize;
  if (options.seed !== undefined) overrides.seed = options.seed;
  if (options.learningRate !== undefined) overrides.learningRate = options.learningRate;
  if (options.backend !== undefined) overrides.backend = options.backend;
  if (options.job !== undefined && typeof options.job !== 'string')
    return { job: resolveJob(structuredClone(options.job), 'job object', overrides), source: 'job object' };
  let source = options.job;
  if (source === undefined && options.resume !== undefined) {
    source = path.join(options.resume, 'job.yaml');
    if (!existsSync(source))
      throw new FlagError(`--resume ${options.resume}`, 'no job.yaml there; is it a run directory?');
  }
  return { job: loadJob(source, overrides), source: source ?? 'default job' };
}
