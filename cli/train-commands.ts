// `ringtrain train` (coordinator + local workers) and `ringtrain coordinator` (workers join from
// other hosts): thin callers of the library's train() (lib/train.ts), which resolves the job the
// same way for both: file (or default, or the resumed run's job.yaml) -> overrides -> schema.
// What only a process needs stays here: turning SIGINT/SIGTERM into train()'s abort signal.
import { type Command, Option } from 'commander';
import { train } from '../lib/train.js';
import type { TrainOptions } from '../lib/train-options.js';
import { FlagError, isBrokenPipe, signalExitCode, StoppedBySignalError, type StopSignal } from '../shared/errors.js';
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
  quiet?: boolean;
  json?: boolean;
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
    )
    .option('--quiet', 'print only the final line (errors still go to stderr)')
    .option('--json', 'print one JSON object per event on stdout (steps, epochs, notes, the end), for scripts');
}

/**
 * The CLI's progress output: --json, --quiet, else a live bar on a terminal and plain lines
 * elsewhere. Lines stop once stdout's reader has gone (`--json | head`); `onClosed` then stops
 * the run as SIGPIPE would stop another program, but at a step boundary with a checkpoint.
 */
function progressOf(flags: CommonFlags, onClosed: () => void): Pick<TrainOptions, 'progress' | 'progressStyle'> {
  if (flags.quiet === true && flags.json === true)
    throw new FlagError('--quiet', 'conflicts with --json; give one of them');
  let closed = false;
  process.stdout.on('error', (error) => {
    if (closed || !isBrokenPipe(error)) return;
    closed = true;
    onClosed();
  });
  const progressStyle =
    flags.json === true ? 'json' : flags.quiet === true ? 'quiet' : process.stdout.isTTY ? 'live' : 'plain';
  return {
    progressStyle,
    progress: (line) => {
      if (!closed) process.stdout.write(`${line}\n`);
    },
  };
}

/**
 * SIGINT/SIGTERM: checkpoint at the next step boundary and exit 143 (130 for SIGINT); before
 * training started, stop at once with the same code. If that takes longer than the grace period
 * (RUN_DEFAULTS.stopGraceMs; Kubernetes gives 30 s), or a second signal comes, exit at once
 * (workers are killed by the exit handler; the previous checkpoint is intact).
 */
function stopSignal(): { signal: AbortSignal; stop: (signal: StopSignal) => void } {
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
  return { signal: controller.signal, stop: onSignal };
}

/** train() with the CLI's signal handling and progress output. */
async function trainFromCli(file: string | undefined, options: TrainOptions & CommonFlags): Promise<void> {
  const { signal, stop } = stopSignal();
  const { quiet: _quiet, json: _json, ...rest } = options;
  await train({
    ...rest,
    ...progressOf(options, () => stop('SIGPIPE')),
    ...(file !== undefined ? { job: file } : {}),
    signal,
  });
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
        await trainFromCli(file, flags);
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
        await trainFromCli(file, { ...flags, cluster: true });
      },
    );
}
