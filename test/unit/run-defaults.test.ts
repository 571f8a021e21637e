// Run-option defaults are applied in one function, and what the CLI's --help and the worker's
// retry policy say comes from the same table.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addTrainCommands } from '../../cli/train-commands.js';
import { addWorkerCommand } from '../../cli/worker-command.js';
import { RUN_DEFAULTS, withRunDefaults } from '../../shared/run-defaults.js';
import { ringtrainVersion } from '../../shared/version.js';
import { defaultRetry } from '../../worker/process/control-client.js';
import { REPO_ROOT } from '../helpers/cli.js';

describe('withRunDefaults', () => {
  it('fills every run option left out', () => {
    expect(withRunDefaults({})).toEqual(RUN_DEFAULTS);
  });

  it('keeps what was given, and other fields, untouched', () => {
    const given = { joinTimeoutMs: 20_000, reconnectMs: 0, job: 'x' };
    const resolved = withRunDefaults(given);
    expect(resolved.joinTimeoutMs).toBe(20_000);
    expect(resolved.reconnectMs).toBe(0); // 0 is a value, not "unset"
    expect(resolved.job).toBe('x');
    expect(resolved.stepTimeoutMs).toBe(RUN_DEFAULTS.stepTimeoutMs);
    expect(given).toEqual({ joinTimeoutMs: 20_000, reconnectMs: 0, job: 'x' });
  });

  it('treats an explicit undefined as unset', () => {
    expect(withRunDefaults({ connectAttempts: undefined }).connectAttempts).toBe(RUN_DEFAULTS.connectAttempts);
  });

  it('has the documented values', () => {
    expect(RUN_DEFAULTS).toEqual({
      joinTimeoutMs: 600_000,
      stepTimeoutMs: 300_000,
      stopGraceMs: 25_000,
      connectAttempts: 10,
      connectInitialDelayMs: 250,
      connectMaxDelayMs: 5_000,
      reconnectMs: 60_000,
    });
    expect(Object.isFrozen(RUN_DEFAULTS)).toBe(true);
  });
});

describe('the CLI and the worker read the same defaults', () => {
  function optionHelp(command: string, flag: string): string {
    const program = new Command();
    addTrainCommands(program);
    addWorkerCommand(program);
    const option = program.commands.find((c) => c.name() === command)?.options.find((o) => o.long === flag);
    if (option === undefined) throw new Error(`no ${flag} on ${command}`);
    // No commander default: an absent flag stays undefined, so withRunDefaults decides.
    expect(option.defaultValue).toBeUndefined();
    return option.description;
  }

  it('--join-timeout says its default, the one the coordinator applies', () => {
    expect(optionHelp('coordinator', '--join-timeout')).toContain(`(default: ${RUN_DEFAULTS.joinTimeoutMs / 1000})`);
  });

  it('--connect-attempts and --reconnect-ms say theirs', () => {
    expect(optionHelp('worker', '--connect-attempts')).toContain(`(default: ${RUN_DEFAULTS.connectAttempts})`);
    expect(optionHelp('worker', '--reconnect-ms')).toContain(`(default: ${RUN_DEFAULTS.reconnectMs})`);
  });

  it("a worker's retry policy is the run defaults", () => {
    expect(defaultRetry()).toEqual({
      attempts: RUN_DEFAULTS.connectAttempts,
      initialDelayMs: RUN_DEFAULTS.connectInitialDelayMs,
      maxDelayMs: RUN_DEFAULTS.connectMaxDelayMs,
    });
  });

  it('the README documents the --join-timeout default', () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(`--join-timeout SECONDS`);
    expect(readme).toMatch(new RegExp(`--join-timeout[^\\n]*default ${RUN_DEFAULTS.joinTimeoutMs / 1000} s`));
  });
});

describe('ringtrainVersion', () => {
  it("is package.json's version", () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(ringtrainVersion()).toBe(pkg.version);
  });
});
