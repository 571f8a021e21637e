// A run directory whose disk fills up (a small real tmpfs: ENOSPC) or whose files hit a size
// limit (RLIMIT_FSIZE through prlimit: EFBIG): one `ringtrain:` line, exit 13, no stack trace,
// nothing half-written that looks complete, and --resume finishes once there is room again.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { CLI, runCli, smallMnistJob, tempDir, writeJob, type CliResult } from '../helpers/cli.js';
import { mountTmpfs, tmpfsUnavailable, type Tmpfs } from '../helpers/tmpfs.js';

const dir = tempDir('ringtrain-disk-full-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 1200 train samples, batch 32: 38 steps an epoch, 76 in all. Only the last step checkpoints.
// On disk: metrics.jsonl ≈ 31 KB, the checkpoint ≈ 310 KB, the model ≈ 107 KB.
const job = writeJob(
  dir,
  smallMnistJob({
    training: { epochs: 2, batchSize: 32 },
    checkpoint: { everySteps: 1000, keep: 2, atEpochEnd: false },
  }),
);

const LINE = (code: string): RegExp =>
  new RegExp(
    `^ringtrain: cannot write .+: no space left \\(${code}: the disk is full, or a quota or file-size limit was reached\\); free some space, then continue with: ringtrain train --resume .+$`,
  );

/** Exit 13 and one clear last line; no stack trace or error log on stderr. */
function expectStorageFull(result: CliResult, code: string, file: string): void {
  expect(result.code, result.stderr).toBe(13);
  const last = result.stderr.trim().split('\n').at(-1) ?? '';
  expect(last).toMatch(LINE(code));
  expect(last).toContain(file);
  // Workers may warn (JSON, level 40) that their step was aborted; nothing is logged as an error.
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toMatch(/"level":(50|60)/);
  expect(result.stderr).not.toContain('unexpected error');
}

/** metrics.jsonl ends with a whole line (none torn), and every line is a record. */
function expectWholeLines(out: string): void {
  const text = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  expect(readMetrics(path.join(out, 'metrics.jsonl'))).toHaveLength(text.split('\n').length - 1);
}

describe.skipIf(tmpfsUnavailable !== undefined)('a full disk (tmpfs, ENOSPC)', () => {
  let disk: Tmpfs | undefined;
  afterEach(() => disk?.remove());

  it('while appending to metrics.jsonl: exit 13, one line, no torn line, no summary', async () => {
    disk = mountTmpfs(24 * 1024);
    const out = path.join(disk.dir, 'run');
    const result = await runCli(['train', job, '--out', out], { timeoutMs: 300_000 });
    expectStorageFull(result, 'ENOSPC', path.join(out, 'metrics.jsonl'));
    expectWholeLines(out);
    expect(existsSync(path.join(out, 'summary.json'))).toBe(false);
    expect(existsSync(path.join(out, 'model'))).toBe(false);
  }, 360_000);

  it('while writing the final model: no model or summary looks complete; --resume finishes with room', async () => {
    disk = mountTmpfs(400 * 1024);
    const out = path.join(disk.dir, 'run');
    const result = await runCli(['train', job, '--out', out], { timeoutMs: 300_000 });
    expectStorageFull(result, 'ENOSPC', path.join(out, 'model'));
    expect(readdirSync(out).filter((n) => n.startsWith('model') || n.startsWith('summary'))).toEqual([]);
    expect(readdirSync(path.join(out, 'checkpoints'))).toEqual(['step-000000076']);
    expectWholeLines(out);
    execFileSync('mount', ['-o', 'remount,size=2m', disk.dir]);
    const resumed = await runCli(['train', '--resume', out], { timeoutMs: 300_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming at step 76/);
    expect(readdirSync(path.join(out, 'model')).sort()).toEqual(['model.json', 'weights.bin']);
    expect(JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'))).toMatchObject({ steps: 76 });
  }, 360_000); // two runs; a hang-catcher only

  it('with room for two checkpoints, keep = 3 still completes: old checkpoints give way first', async () => {
    disk = mountTmpfs(900 * 1024);
    const out = path.join(disk.dir, 'run');
    const everyTen = writeJob(
      dir,
      smallMnistJob({
        training: { epochs: 2, batchSize: 32 },
        checkpoint: { everySteps: 10, keep: 3, atEpochEnd: false },
      }),
      'every-ten.yaml',
    );
    const result = await runCli(['train', everyTen, '--out', out], { timeoutMs: 300_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(readdirSync(path.join(out, 'checkpoints')).sort()).toEqual(['step-000000070', 'step-000000076']);
    expect(JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'))).toMatchObject({ steps: 76 });
  }, 360_000);
});

describe('a file-size limit (RLIMIT_FSIZE, EFBIG)', () => {
  it('reached by metrics.jsonl gives the same line and exit code', () => {
    const out = path.join(dir, 'fsize');
    // prlimit runs the CLI with a 16 KB limit on every file it writes; Node ignores SIGXFSZ, so
    // the write that would cross it fails with EFBIG.
    const run = spawnSync('prlimit', ['--fsize=16000', process.execPath, CLI, 'train', job, '--out', out], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(run.error).toBeUndefined();
    const result: CliResult = { code: run.status, signal: run.signal, stdout: run.stdout, stderr: run.stderr };
    expectStorageFull(result, 'EFBIG', path.join(out, 'metrics.jsonl'));
    expectWholeLines(out);
    expect(existsSync(path.join(out, 'summary.json'))).toBe(false);
  }, 360_000);
});
