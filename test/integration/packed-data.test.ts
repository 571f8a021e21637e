// `ringtrain pack` end to end: the step contract holds on packed data (1 and 3 workers reach the
// parameters of the same job on the data unpacked), and bad packed data ends in one `ringtrain:`
// line naming the shard: pack --verify (exit 3), a truncated shard at start (exit 3, before any
// worker), a corrupt shard at the first step that reads it (exit 8, the failed workers' reason).
import { readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeTrainState } from '../../shared/train-state.js';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

const STEPS = 12;
const dir = tempDir('ringtrain-packed-it-');

function job(data: Record<string, unknown>, name: string): string {
  return writeJob(
    dir,
    smallMnistJob({
      data,
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 32, maxSteps: STEPS },
      checkpoint: { everySteps: 0, keep: 1 },
      validation: { everySteps: 0 },
      consistencyCheckEverySteps: 4,
    }),
    name,
  );
}

const MNIST = { format: 'mnist', limit: 600, split: { validation: 0.1, test: 0.1 } };

async function trainParams(jobFile: string, workers: number, label: string): Promise<Float32Array> {
  const out = path.join(dir, `run-${label}`);
  const result = await runCli(['train', jobFile, '--workers', String(workers), '--out', out]);
  expect(result.stderr, result.stdout).toBe('');
  expect(result.code).toBe(0);
  const last = readdirSync(path.join(out, 'checkpoints'))
    .filter((n) => n.startsWith('step-'))
    .sort()
    .at(-1);
  expect(last).toBe(`step-${String(STEPS).padStart(9, '0')}`);
  return decodeTrainState(readFileSync(path.join(out, 'checkpoints', last ?? '', 'state.bin')), label).params;
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return max;
}

describe('packed data', () => {
  const packedDir = path.join(dir, 'mnist-packed');
  beforeAll(async () => {
    const packed = await runCli(['pack', job(MNIST, 'pack.yaml'), '--out', packedDir, '--shard-size', '256KiB']);
    expect(packed.stderr).toBe('');
    expect(packed.code).toBe(0);
    expect(packed.stdout).toMatch(/ringtrain: packed mnist: 480 train \/ 60 validation \/ 60 test/);
    expect(packed.stdout).toMatch(/ringtrain: wrote .*mnist-packed: \d+ shards, \d+ bytes, hash [0-9a-f]{16}/);
  });

  it('1 and 3 workers on the packed folder reach the parameters of 1 worker on the data unpacked', async () => {
    const unpacked = await trainParams(job(MNIST, 'unpacked.yaml'), 1, 'unpacked-1');
    const packedJob = job({ format: 'packed', path: packedDir }, 'packed.yaml');
    const one = await trainParams(packedJob, 1, 'packed-1');
    expect(maxAbsDifference(one, unpacked)).toBe(0); // the same bytes in the same order
    const three = await trainParams(packedJob, 3, 'packed-3');
    expect(three.length).toBe(unpacked.length);
    expect(maxAbsDifference(three, unpacked)).toBeLessThanOrEqual(1e-5);
  });

  it('pack --verify passes a whole folder and names a corrupt shard (exit 3); training names it too', async () => {
    const good = await runCli(['pack', '--verify', packedDir]);
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/all checksums match/);
    const corrupt = path.join(dir, 'corrupt');
    expect((await runCli(['pack', job(MNIST, 'pack2.yaml'), '--out', corrupt, '--shard-size', '256KiB'])).code).toBe(0);
    const shard = path.join(corrupt, 'train-00000.bin');
    const bytes = readFileSync(shard);
    bytes[1000] = (bytes[1000] ?? 0) ^ 0x55;
    writeFileSync(shard, bytes);
    const verify = await runCli(['pack', '--verify', corrupt]);
    expect(verify.code).toBe(3);
    expect(verify.stderr).toMatch(
      /^ringtrain: .*corrupt: 1 of \d+ shards are bad: train-00000\.bin \(checksum does not match: corrupt\)/,
    );
    const trained = await runCli([
      'train',
      job({ format: 'packed', path: corrupt }, 'corrupt.yaml'),
      '--workers',
      '2',
      '--out',
      path.join(dir, 'run-corrupt'),
    ]);
    expect(trained.code).toBe(8);
    expect(trained.stderr).toMatch(
      /ringtrain: .*train-00000\.bin: shard checksum does not match the manifest \(corrupt\)/,
    );
  });

  it('a truncated shard or a mismatched job stops the run before any worker starts (exit 3)', async () => {
    const cut = path.join(dir, 'cut');
    expect((await runCli(['pack', job(MNIST, 'pack3.yaml'), '--out', cut, '--shard-size', '256KiB'])).code).toBe(0);
    truncateSync(path.join(cut, 'test-00000.bin'), 100);
    const truncated = await runCli([
      'train',
      job({ format: 'packed', path: cut }, 'cut.yaml'),
      '--out',
      path.join(dir, 'run-cut'),
    ]);
    expect(truncated.code).toBe(3);
    expect(truncated.stderr).toMatch(
      /^ringtrain: .*test-00000\.bin: shard is 100 bytes, the manifest says \d+ \(truncated/,
    );
    const sparse = writeJob(
      dir,
      { ...smallMnistJob({ data: { format: 'packed', path: packedDir } }), loss: 'sparseCategoricalCrossentropy' },
      'sparse.yaml',
    );
    const mismatch = await runCli(['train', sparse, '--out', path.join(dir, 'run-sparse')]);
    expect(mismatch.code).toBe(3);
    expect(mismatch.stderr).toMatch(
      /manifest\.json: labels were packed for loss categoricalCrossentropy, but the job's loss is sparseCategoricalCrossentropy/,
    );
    const again = await runCli(['pack', job(MNIST, 'pack4.yaml'), '--out', packedDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^ringtrain: --out: .* already exists; remove it or pack into a new folder/);
  });

  it('a data module trains with 2 workers; one that returns the wrong shape stops the run naming it (exit 3)', async () => {
    const body = (shape: string): string => `
export function createDataset() {
  return {
    count: 400, inputShape: ${shape}, labelSize: 1, task: 'classification', numClasses: 10,
    fill(indices, x, y) {
      indices.forEach((s, i) => { for (let j = 0; j < 784; j++) x[i * 784 + j] = ((s * 31 + j) % 17) / 17; y[i] = s % 10; });
    },
  };
}
`;
    writeFileSync(path.join(dir, 'data.mjs'), body('[784]'));
    const moduleJob = (file: string, name: string): string =>
      writeJob(
        dir,
        {
          ...smallMnistJob({
            data: { format: 'module', path: file },
            training: { epochs: 1, batchSize: 32, maxSteps: 6 },
          }),
          loss: 'sparseCategoricalCrossentropy',
        },
        name,
      );
    const good = await runCli([
      'train',
      moduleJob('./data.mjs', 'module.yaml'),
      '--workers',
      '2',
      '--out',
      path.join(dir, 'run-module'),
    ]);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/320\/40\/40 train\/validation\/test samples[\s\S]*at step 6 of 10; model\/ is step 6/);
    writeFileSync(path.join(dir, 'wrong.mjs'), body('[28, 28]'));
    const wrong = await runCli(['train', moduleJob('./wrong.mjs', 'wrong.yaml'), '--out', path.join(dir, 'run-wrong')]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(
      /^ringtrain: .*wrong\.mjs: data module's samples have shape \[28, 28\], but model.input is \[784\]; make them agree/,
    );
  });
});
