// `ringtrain train` (coordinator + local workers) and `ringtrain coordinator` (workers join from
// other hosts): thin callers of the library's train() (lib/train.ts), which resolves the job the
// same way for both: file (or default, or the resumed run's job.yaml) -> overrides -> schema.
// What only a process needs stays here: turning SIGINT/SIGTERM into train()'s abort signal.
import { type Command, Option } from 'commander';
import { train } from '../lib/train.js';
import type { TrainOptions } from '../lib/train-options.js';
import { signalExitCode, StoppedBySignalError, type StopSignal } from '../shared/errors.js';
import { RUN_DEFAULTS } from '../shared/run-defaults.js';
import { httpAddress, nonNegativeInt, positiveInt, positiveNumber } from './arg-parsers.js';
import { addSecurityOptions, type SecurityFlags } from './security-options.js';

interface CommonFlags extends SecurityFlags {
  epochs?: number;
  batchSize?: number;
  seed?: number;
  learningRate?: number;
  backend?: NonNullable<TrainOptions['backend']>;
  maxSteps?: number;
  out?: string;
  resume?: string;
  resumeIfExists?: boolean;
  runsDir?: string;
  http?: string;
}

function addCommonOptions(command: Command): Command {
  return addSecurityOptions(command)
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
    .option('--resume <dir>', 'continue the run in <dir> from its newest valid checkpoint')
    .option(
      '--resume-if-exists',
      'with --out DIR: continue the run in DIR if it holds one (a restarted pod), else start it there',
    )
    .option(
      '--http <PORT|ADDR:PORT>',
      'serve Prometheus /metrics and the live dashboard (a bare port binds 127.0.0.1; 0 = any free port)',
      httpAddress('--http'),
    );
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
        flags: CommonFlags & { workers?: number; gpus?: string; port: number; host: string },
      ) => {
        await train({ ...flags, ...(file !== undefined ? { job: file } : {}), signal: stopSignal() });
      },
    );

  addCommonOptions(
    program
      .command('coordinator')
      .description('run only the coordinator; workers join with `ringtrain worker --coordinator HOST:PORT`'),
  )
    .requiredOption('--port <P>', 'port to listen on', nonNegativeInt('--port', 65535))
    .option(
      '--host <addr>',
      'bind address (default: 0.0.0.0 with TLS, else 127.0.0.1: give --host 0.0.0.0 for workers on other hosts)',
    )
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
        flags: CommonFlags & { port: number; host?: string; expectWorkers?: number; joinTimeout?: number },
      ) => {
        await train({ ...flags, ...(file !== undefined ? { job: file } : {}), cluster: true, signal: stopSignal() });
      },
    );
}
