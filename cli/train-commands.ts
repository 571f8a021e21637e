// `ringtrain train` (coordinator + local workers) and `ringtrain coordinator` (workers join from
// other hosts). Both resolve the job the same way: file (or default, or the resumed run's
// job.yaml) -> CLI overrides -> schema.
import * as path from 'node:path';
import { existsSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { runCoordinator, type CoordinatorOptions } from '../coordinator/coordinator.js';
import { FlagError, signalExitCode, StoppedBySignalError, type StopSignal } from '../shared/errors.js';
import { loadJob, type JobOverrides } from '../shared/job.js';
import { RUN_DEFAULTS } from '../shared/run-defaults.js';
import { detectGpus, nonNegativeInt, parseGpus, positiveInt, positiveNumber } from './arg-parsers.js';

interface CommonFlags {
  epochs?: number;
  batchSize?: number;
  seed?: number;
  learningRate?: number;
  backend?: string;
  maxSteps?: number;
  out?: string;
  resume?: string;
  resumeIfExists?: boolean;
  runsDir?: string;
}

function addCommonOptions(command: Command): Command {
  return command
    .argument('[job]', 'job file (YAML or JSON); default: the built-in MNIST MLP job')
    .option('--epochs <E>', 'override training.epochs', positiveInt('--epochs'))
    .option('--batch-size <B>', 'override training.batchSize (global batch)', positiveInt('--batch-size'))
    .option('--seed <S>', 'override seed', nonNegativeInt('--seed', 2 ** 31 - 1))
    .option('--learning-rate <LR>', 'override optimizer.learningRate', positiveNumber('--learning-rate'))
    .option(
      '--max-steps <K>',
      'stop this run after global step K (checkpointing there); --resume continues it',
      positiveInt('--max-steps'),
    )
    .addOption(
      new Option('--backend <name>', 'TensorFlow.js backend for the workers').choices([
        'auto',
        'tensorflow',
        'wasm',
        'cpu',
      ]),
    )
    .option('--out <dir>', 'run directory (default runs/<timestamp>-<name>)')
    .option('--runs-dir <dir>', 'parent of timestamped run directories', 'runs')
    .option(
      '--resume <dir>',
      'continue the run in <dir> from its newest valid checkpoint; with --epochs N (or other run-length settings), extend it',
    )
    .option(
      '--resume-if-exists',
      'with --out DIR: continue the run in DIR if it holds one (a restarted pod), else start it there',
    );
}

/**
 * `--resume-if-exists` turns into `--resume DIR` when `--out DIR` already holds a run (its
 * job.yaml, written before any step), so one unchanged command line starts a run and, run again
 * after a crash or a pod restart, continues it.
 */
function withAutoResume<T extends CommonFlags>(flags: T): T {
  if (flags.resumeIfExists !== true) return flags;
  if (flags.out === undefined)
    throw new FlagError('--resume-if-exists', 'needs --out DIR, the run directory to continue or start');
  if (flags.resume !== undefined)
    throw new FlagError(
      '--resume-if-exists',
      `conflicts with --resume ${flags.resume}; give --out DIR --resume-if-exists, or --resume DIR alone`,
    );
  if (!existsSync(path.join(flags.out, 'job.yaml'))) return flags;
  process.stdout.write(`ringtrain: ${flags.out} holds a run; continuing it (--resume-if-exists)\n`);
  return { ...flags, resume: flags.out };
}

/** The job for a command: an explicit file, else the resumed run's job.yaml, else the default. */
function resolveJobFor(
  file: string | undefined,
  flags: CommonFlags,
  workers: number | undefined,
): { job: ReturnType<typeof loadJob>; source: string } {
  const overrides: JobOverrides = {};
  if (workers !== undefined) overrides.workers = workers;
  if (flags.epochs !== undefined) overrides.epochs = flags.epochs;
  if (flags.batchSize !== undefined) overrides.batchSize = flags.batchSize;
  if (flags.seed !== undefined) overrides.seed = flags.seed;
  if (flags.learningRate !== undefined) overrides.learningRate = flags.learningRate;
  if (flags.backend !== undefined) overrides.backend = flags.backend;
  let source = file;
  if (source === undefined && flags.resume !== undefined) {
    source = path.join(flags.resume, 'job.yaml');
    if (!existsSync(source))
      throw new FlagError(`--resume ${flags.resume}`, 'no job.yaml there; is it a run directory?');
  }
  return { job: loadJob(source, overrides), source: source ?? 'default job' };
}

function baseOptions(flags: CommonFlags): Pick<CoordinatorOptions, 'outDir' | 'resumeDir' | 'runsRoot' | 'stopAtStep'> {
  return {
    ...(flags.maxSteps !== undefined ? { stopAtStep: flags.maxSteps } : {}),
    ...(flags.out !== undefined ? { outDir: flags.out } : {}),
    ...(flags.resume !== undefined ? { resumeDir: flags.resume } : {}),
    ...(flags.runsDir !== undefined ? { runsRoot: flags.runsDir } : {}),
  };
}

/**
 * SIGINT/SIGTERM: checkpoint at the next step boundary and exit 143 (130 for SIGINT); before
 * training started, stop at once with the same code. If that takes longer than the grace period
 * (RUN_DEFAULTS.stopGraceMs; Kubernetes gives 30 s), or a second signal comes, exit at once
 * (workers are killed by the exit handler; the previous checkpoint is intact).
 */
function stopSignal(): AbortSignal {
  const controller = new AbortController();
  const graceMs = RUN_DEFAULTS.stopGraceMs;
  const onSignal = (signal: StopSignal): void => {
    const code = signalExitCode(signal);
    if (controller.signal.aborted) process.exit(code);
    setTimeout(() => {
      process.stderr.write(
        `ringtrain: no step boundary within ${graceMs / 1000} s of ${signal}; exiting without a new checkpoint\n`,
      );
      process.exit(code);
    }, graceMs).unref();
    controller.abort(new StoppedBySignalError(signal));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  return controller.signal;
}

export function addTrainCommands(program: Command): void {
  addCommonOptions(
    program.command('train').description('train with a coordinator and local worker processes on this machine'),
  )
    .option('--workers <N>', 'number of local worker processes (overrides workers:)', positiveInt('--workers'))
    .option(
      '--gpus <list>',
      'one worker per GPU: all, a count N, or indices like 0,2 (sets CUDA_VISIBLE_DEVICES per worker)',
    )
    .option('--port <P>', 'coordinator port (0 = any free port)', nonNegativeInt('--port', 65535), 0)
    .option('--host <addr>', 'coordinator bind address', '127.0.0.1')
    .action(
      async (
        file: string | undefined,
        parsed: CommonFlags & { workers?: number; gpus?: string; port: number; host: string },
      ) => {
        const flags = withAutoResume(parsed);
        const gpus = flags.gpus === undefined ? [] : parseGpus(flags.gpus, detectGpus);
        if (gpus.length > 0 && flags.workers !== undefined && flags.workers !== gpus.length) {
          throw new FlagError(
            `--workers ${flags.workers}`,
            `disagrees with --gpus ${flags.gpus} (${gpus.length} GPUs); give one of them`,
          );
        }
        const { job, source } = resolveJobFor(file, flags, gpus.length > 0 ? gpus.length : flags.workers);
        const workers = typeof job.workers === 'number' ? job.workers : job.workers.max;
        await runCoordinator({
          job,
          jobSource: source,
          host: flags.host,
          port: flags.port,
          localWorkers: workers,
          gpus,
          signal: stopSignal(),
          ...baseOptions(flags),
        });
      },
    );

  addCommonOptions(
    program
      .command('coordinator')
      .description('run only the coordinator; workers join with `ringtrain worker --coordinator HOST:PORT`'),
  )
    .requiredOption('--port <P>', 'port to listen on', nonNegativeInt('--port', 65535))
    .option('--host <addr>', 'bind address', '0.0.0.0')
    .option(
      '--expect-workers <N>',
      'workers to wait for before training (overrides workers:)',
      positiveInt('--expect-workers'),
    )
    .option(
      '--join-timeout <seconds>',
      `how long to wait for workers to join (default: ${RUN_DEFAULTS.joinTimeoutMs / 1000})`,
      positiveInt('--join-timeout'),
    )
    .action(
      async (
        file: string | undefined,
        parsed: CommonFlags & { port: number; host: string; expectWorkers?: number; joinTimeout?: number },
      ) => {
        const flags = withAutoResume(parsed);
        const { job, source } = resolveJobFor(file, flags, flags.expectWorkers);
        await runCoordinator({
          job,
          jobSource: source,
          host: flags.host,
          port: flags.port,
          localWorkers: 0,
          gpus: [],
          ...(flags.joinTimeout !== undefined ? { joinTimeoutMs: flags.joinTimeout * 1000 } : {}),
          signal: stopSignal(),
          ...baseOptions(flags),
        });
      },
    );
}
