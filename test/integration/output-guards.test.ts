// Loss, model output and metrics that disagree are refused through the real CLI: one
// `ringtrain:` line naming the key and the fix, the config-error exit code 2, and no run
// directory (nothing trained). The honest form, fromLogits, trains with 2 real workers.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

const dir = tempDir('ringtrain-guards-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LINEAR_HEAD = {
  input: [784],
  layers: [
    { type: 'dense', units: 16, activation: 'relu' },
    { type: 'dense', units: 10 },
  ],
};

/** Exactly one line that is not a JSON log record, and no stack trace. */
function expectOneHumanLine(stderr: string, pattern: RegExp): void {
  const human = stderr
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('{'));
  expect(human, stderr).toHaveLength(1);
  expect(human[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('a job whose loss, output and metrics disagree is refused before any worker trains', () => {
  writeFileSync(
    path.join(dir, 'values.csv'),
    ['a,b,y', ...Array.from({ length: 40 }, (_, i) => `${i % 7},${i % 5},${(i % 7) * 0.5 - (i % 5)}`)].join('\n'),
  );
  const cases: Array<{ name: string; job: Record<string, unknown>; message: RegExp }> = [
    {
      name: 'categoricalCrossentropy on a final layer without softmax',
      job: smallMnistJob({ model: LINEAR_HEAD }),
      message:
        /^ringtrain: loss: categoricalCrossentropy needs probabilities, but the model's output layer "dense_1" \(Dense\) has activation linear; end the model with activation softmax, or write loss: \{ type: categoricalCrossentropy, fromLogits: true \}$/,
    },
    {
      name: 'fromLogits on a softmax output',
      job: smallMnistJob({ loss: { type: 'sparseCategoricalCrossentropy', fromLogits: true } }),
      message: /^ringtrain: loss: fromLogits: true expects raw scores, but .* already applies softmax/,
    },
    {
      name: 'accuracy on a regression',
      job: smallMnistJob({
        data: { format: 'csv', path: 'values.csv', label: 'y', task: 'regression' },
        model: { input: [2], layers: [{ type: 'dense', units: 1 }] },
        loss: 'meanSquaredError',
        metrics: ['mae', 'accuracy'],
      }),
      message: /^ringtrain: metrics: accuracy needs class labels, but the task is a regression; use mae or mse$/,
    },
    {
      name: 'binaryAccuracy on ten classes',
      job: smallMnistJob({ metrics: ['binaryAccuracy'] }),
      message: /^ringtrain: metrics: binaryAccuracy thresholds one 0\/1 output, but the task has several classes/,
    },
  ];

  it.each(cases)('$name', async ({ name, job, message }) => {
    const file = writeJob(dir, job, `${name.replace(/\W+/g, '-')}.yaml`);
    const out = path.join(dir, `run-${name.replace(/\W+/g, '-')}`);
    const result = await runCli(['train', file, '--out', out]);
    expect(result.code).toBe(2);
    expectOneHumanLine(result.stderr, message);
    expect(existsSync(out)).toBe(false);
  });
});

describe('fromLogits', () => {
  it('trains a model with a linear head on 2 workers, reporting a loss and an accuracy', async () => {
    const file = writeJob(
      dir,
      smallMnistJob({
        data: { format: 'mnist', limit: 400, split: { validation: 0.1, test: 0.1 } },
        model: LINEAR_HEAD,
        loss: { type: 'categoricalCrossentropy', fromLogits: true },
        training: { epochs: 2, batchSize: 32 },
      }),
      'from-logits.yaml',
    );
    const out = path.join(dir, 'from-logits-run');
    const result = await runCli(['train', file, '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      worldSize: number;
      test: Record<string, number>;
    };
    expect(summary.worldSize).toBe(2);
    // A silently wrong loss reads 0.0000; the crossentropy of logits is a real, positive number.
    expect(summary.test['loss']).toBeGreaterThan(0.01);
    expect(summary.test['accuracy']).toBeGreaterThan(0.5);
  });
});
