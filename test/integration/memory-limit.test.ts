// Memory with real processes: a model that cannot fit the wasm heap is refused before anything
// starts (exit 2, one line); one that gets past the check (RINGTRAIN_MEMORY_CHECK=off) and really
// runs out of wasm memory in step 0 is reported as out of memory, and, with no checkpoint
// written, the coordinator does not advise --resume.
import { existsSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

const dir = tempDir('ringtrain-memory-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ringtrainLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('ringtrain:'));

describe('memory limits', () => {
  it('a ~200M-parameter model on wasm is refused before any worker starts, in one line, exit 2', async () => {
    const job = writeJob(
      dir,
      smallMnistJob({
        model: {
          input: [784],
          layers: [
            { type: 'dense', units: 250_000, activation: 'relu' },
            { type: 'dense', units: 10, activation: 'softmax' },
          ],
        },
        backend: 'wasm',
      }),
      'huge.yaml',
    );
    const out = path.join(dir, 'huge-run');
    const result = await runCli(['train', job, '--out', out], { timeoutMs: 120_000 });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(
      /^ringtrain: the model and batch need about 5\.\d GiB of tensor memory per worker, more than the wasm backend's 4\.0 GiB heap \(198,750,010 parameters/,
    );
    expect(result.stderr).not.toMatch(/memory access|WebAssembly|failed/);
    expect(existsSync(out)).toBe(false);
  }, 150_000);

  it('a real wasm out-of-memory in step 0 is reported as such, and --resume is not advised without a checkpoint', async () => {
    // One 600 × 2,000,000 activation (4.8 GB) cannot exist on a 4 GiB heap; the allocation fails
    // before it touches that memory, so the test stays light.
    const job = writeJob(dir, {
      name: 'oom',
      seed: 7,
      data: { format: 'xor', samples: 600 },
      model: {
        input: [2],
        layers: [
          { type: 'dense', units: 2_000_000, activation: 'relu' },
          { type: 'dense', units: 1, activation: 'sigmoid' },
        ],
      },
      loss: 'binaryCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 600 },
      workers: 1,
      restartWorkers: 0,
      backend: 'wasm',
      checkpoint: { everySteps: 100, keep: 1 },
    });
    const out = path.join(dir, 'oom-run');
    const result = await runCli(['train', job, '--out', out], {
      env: { RINGTRAIN_MEMORY_CHECK: 'off' },
      timeoutMs: 280_000,
    });
    expect(result.code, result.stderr).toBe(8);
    const lines = ringtrainLines(result.stderr);
    // The worker's own line, then the coordinator's, each naming out of memory in step 0.
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const line of lines) expect(line).toMatch(/out of memory in step 0 on the wasm backend/);
    const coordinator = lines[lines.length - 1] ?? '';
    expect(coordinator).toMatch(/every worker failed/);
    expect(coordinator).toMatch(/no checkpoint was written, so there is nothing to resume/);
    expect(result.stderr).not.toMatch(/--resume/);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }, 300_000);
});
