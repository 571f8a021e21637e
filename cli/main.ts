#!/usr/bin/env node
// `ringtrain` command line: train (embedded), coordinator and worker (separate hosts).
// Every failure ends the same way: one `ringtrain:` line on stderr, no stack trace, and the
// documented exit code (README "When things fail"): 2 for a bad flag, as for a bad job file.
import { Command, CommanderError, Option } from 'commander';
import { describeError, RingtrainError, userFacingError } from '../shared/errors.js';
import { componentLogger } from '../shared/logger.js';
import { stderrPrefixed } from '../shared/stderr-prefix.js';
import { ringtrainVersion } from '../shared/version.js';
import { addBenchCommand } from './bench-command.js';
import { addPackCommand } from './pack-command.js';
import { addCertsCommand } from './certs-command.js';
import { addPredictCommands } from './predict-commands.js';
import { addReportCommand } from './report-command.js';
import { addTrainCommands } from './train-commands.js';
import { addWorkerCommand } from './worker-command.js';

/** Exit code of a malformed command line (the same as a malformed job file). */
const USAGE_EXIT_CODE = 2;

export function buildProgram(): Command {
  const program = new Command('ringtrain')
    .description(
      'Distributed data-parallel neural-network training: a gRPC coordinator, N workers, a ring all-reduce between the workers.',
    )
    .version(ringtrainVersion())
    // Commander's own error printing and process.exit are replaced by main's one-line report;
    // set before the subcommands are added, which inherit both.
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
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
  addPackCommand(program);
  addPredictCommands(program);
  addReportCommand(program);
  addCertsCommand(program);
  return program;
}

/** The one line and exit code a failure ends with. */
export function reportOf(error: unknown): { line: string; exitCode: number } {
  if (error instanceof RingtrainError) return { line: `ringtrain: ${error.message}`, exitCode: error.exitCode };
  if (error instanceof CommanderError) {
    // --help and --version end here too, having printed what was asked.
    if (error.exitCode === 0) return { line: '', exitCode: 0 };
    // No subcommand: commander has printed the help already.
    if (error.code === 'commander.help')
      return {
        line: 'ringtrain: give a command: train, coordinator, worker, pack, bench, predict, evaluate, report or certs',
        exitCode: USAGE_EXIT_CODE,
      };
    const message = error.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    return { line: `ringtrain: ${message} (see --help)`, exitCode: USAGE_EXIT_CODE };
  }
  return {
    line: `ringtrain: internal error: ${firstLine(describeError(error))} (details with --log-level debug)`,
    exitCode: 1,
  };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/** Prints the failure's line (its stack only to the debug log) and sets the exit code. */
function report(thrown: unknown): void {
  // A write that found no room (ENOSPC, ...) anywhere is StorageFullError: one line, exit 13.
  const error = userFacingError(thrown);
  const { line, exitCode } = reportOf(error);
  if (line !== '') process.stderr.write(stderrPrefixed(`${line}\n`));
  if (!(error instanceof RingtrainError) && !(error instanceof CommanderError))
    componentLogger('cli').debug({ err: error }, 'unexpected error');
  process.exitCode = exitCode;
}

async function main(): Promise<void> {
  // An error outside the awaited run (a timer, a stray socket) still ends as one line.
  const fatal = (error: unknown): void => {
    report(error);
    process.exit();
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (error) {
    report(error);
  }
  // The run is over and everything it wrote is flushed (files are fsynced; stdout/stderr pipes
  // are synchronous on Linux). Exit now rather than wait for stray sockets: an HTTP/2 session
  // to a peer that vanished from the network can keep the event loop alive for minutes.
  process.exit();
}

await main();
