#!/usr/bin/env node
// `ringtrain` command line: train (embedded), coordinator and worker (separate hosts).
// Errors a user can fix print as one line and a documented exit code; see README "Exit codes".
import { Command, Option } from 'commander';
import { describeError, RingtrainError, userFacingError } from '../shared/errors.js';
import { componentLogger } from '../shared/logger.js';
import { addBenchCommand } from './bench-command.js';
import { addTrainCommands } from './train-commands.js';
import { addWorkerCommand } from './worker-command.js';

export function buildProgram(): Command {
  const program = new Command('ringtrain')
    .description(
      'Distributed data-parallel neural-network training: a gRPC coordinator, N workers, a ring all-reduce between the workers.',
    )
    .version('0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .addOption(
      new Option('--log-level <level>', 'log level for JSON logs on stderr').choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    )
    .hook('preAction', (cmd) => {
      const level = cmd.opts<{ logLevel?: string }>().logLevel;
      if (level !== undefined) process.env['RINGTRAIN_LOG_LEVEL'] = level;
    });
  addTrainCommands(program);
  addWorkerCommand(program);
  addBenchCommand(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (thrown) {
    const error = userFacingError(thrown);
    const code = error instanceof RingtrainError ? error.exitCode : 1;
    process.stderr.write(`ringtrain: ${describeError(error)}\n`);
    if (!(error instanceof RingtrainError)) componentLogger('cli').error({ err: error }, 'unexpected error');
    process.exitCode = code;
  }
  // The run is over and everything it wrote is flushed (files are fsynced; stdout/stderr pipes
  // are synchronous on Linux). Exit now rather than wait for stray sockets: an HTTP/2 session
  // to a peer that vanished from the network can keep the event loop alive for minutes.
  process.exit();
}

await main();
