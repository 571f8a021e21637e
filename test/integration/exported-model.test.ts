// A CSV classifier (penguins) and a regression (cars) trained with the default `normalize: true`
// through the real CLI: the exported model predicts RAW rows as well as the run's own test
// figures say, loaded with plain @tensorflow/tfjs (the README's program, run as is), with
// loadModel, and through `ringtrain predict` / `ringtrain evaluate`.
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/model-io.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { REPO_ROOT, runCli, runNode, tempDir, writeJob } from '../helpers/cli.js';
import { rSquared, runRSquared, trainTable, type TrainedTable } from '../helpers/trained-tables.js';
import { toCsv } from '../helpers/vega-tables.js';

/** The README's "plain TensorFlow.js in Node" program, extracted verbatim between its markers. */
function readmeNodeProgram(): string {
  const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const match = /<!-- node-load-example -->\s*```js\n([\s\S]*?)```/.exec(readme);
  if (match?.[1] === undefined) throw new Error('README.md has no node-load-example block');
  return match[1];
}

/** Runs the README program in a folder of its own (node_modules linked: plain tfjs, no ringtrain code). */
async function predictWithReadmeProgram(dir: string, modelDir: string, rows: number[][]): Promise<number[][]> {
  const folder = path.join(dir, 'plain-tfjs');
  if (!existsSync(folder)) {
    mkdirSync(folder);
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(folder, 'node_modules'));
    writeFileSync(path.join(folder, 'predict.mjs'), readmeNodeProgram());
  }
  const rowsFile = path.join(folder, 'rows.json');
  writeFileSync(rowsFile, JSON.stringify(rows));
  const result = await runNode([path.join(folder, 'predict.mjs'), modelDir, rowsFile], { cwd: folder });
  if (result.code !== 0) throw new Error(`README program failed (${result.code}):\n${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '[]') as number[][];
}

function argmax(row: number[]): number {
  return row.reduce((best, p, i) => (p > (row[best] as number) ? i : best), 0);
}

function classNamesOf(runDir: string): string[] {
  const json = JSON.parse(readFileSync(path.join(runDir, 'model', 'model.json'), 'utf8')) as {
    userDefinedMetadata: { ringtrain: { classNames: string[] } };
  };
  return json.userDefinedMetadata.ringtrain.classNames;
}

describe('exported model on raw data (penguins classifier, cars regression; real CLI, normalize: true)', () => {
  const dir = tempDir();
  let penguins: TrainedTable;
  let cars: TrainedTable;

  beforeAll(async () => {
    await selectBackend('cpu');
    penguins = await trainTable('classifier', dir);
    cars = await trainTable('regression', dir);
  });

  it('plain tfjs in Node (the README program) predicts raw test rows as well as the run reports', async () => {
    const names = classNamesOf(penguins.runDir);
    expect(names).toEqual(['Adelie', 'Chinstrap', 'Gentoo']);
    const probs = await predictWithReadmeProgram(dir, path.join(penguins.runDir, 'model'), penguins.testX);
    const correct = probs.filter((row, i) => names[argmax(row)] === penguins.testLabels[i]).length;
    expect(Math.abs(correct / probs.length - (penguins.test['accuracy'] as number))).toBeLessThanOrEqual(0.01);
    // The run itself is good: a model that ignored its scaling would sit near chance (0.33 to 0.44).
    expect(penguins.test['accuracy']).toBeGreaterThan(0.9);

    const values = (await predictWithReadmeProgram(dir, path.join(cars.runDir, 'model'), cars.testX)).map(
      (r) => r[0] as number,
    );
    const r2 = rSquared(cars.testLabels.map(Number), values);
    expect(Math.abs(r2 - runRSquared(cars))).toBeLessThanOrEqual(0.01);
    expect(r2).toBeGreaterThan(0.5);
  });

  it('loadModel gives the model and its metadata; it agrees with plain tfjs', async () => {
    const loaded = await loadModel(penguins.runDir);
    try {
      expect(loaded.metadata).toMatchObject({
        task: 'classification',
        classNames: ['Adelie', 'Chinstrap', 'Gentoo'],
        featureColumns: penguins.features,
        labelColumn: 'Species',
        loss: 'categoricalCrossentropy',
        metrics: ['accuracy'],
      });
      // The standardisation is a frozen layer of the model, not something for the caller to do.
      expect(loaded.model.layers.map((l) => l.name)).toContain('ringtrain_standardize');
      const ours = tf.tidy(() =>
        (loaded.model.predict(tf.tensor2d(penguins.testX)) as tf.Tensor).arraySync(),
      ) as number[][];
      const plain = await predictWithReadmeProgram(dir, path.join(penguins.runDir, 'model'), penguins.testX);
      ours.forEach((row, i) => row.forEach((p, k) => expect(p).toBeCloseTo(plain[i]?.[k] as number, 5)));
    } finally {
      loaded.model.dispose();
    }
    const regression = await loadModel(path.join(cars.runDir, 'model'));
    expect(regression.metadata).toMatchObject({ task: 'regression', labelColumn: 'Miles_per_Gallon' });
    expect(regression.model.layers.map((l) => l.name)).toContain('ringtrain_label_scale');
    regression.model.dispose();
  });

  it('predict writes class names and probabilities (CSV) or values (JSON lines) for raw rows', async () => {
    const out = path.join(dir, 'penguins-predictions.csv');
    const predicted = await runCli(['predict', penguins.runDir, '--data', penguins.testCsv, '--out', out]);
    expect(predicted.stderr).toBe('');
    expect(predicted.code).toBe(0);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('class,p(Adelie),p(Chinstrap),p(Gentoo)');
    const classes = lines.slice(1).map((line) => line.split(',')[0]);
    expect(classes).toHaveLength(penguins.testLabels.length);
    const accuracy = classes.filter((c, i) => c === penguins.testLabels[i]).length / classes.length;
    expect(Math.abs(accuracy - (penguins.test['accuracy'] as number))).toBeLessThanOrEqual(0.01);

    // JSON lines in, JSON lines out; keys in any order (columns are matched by name).
    const rowsFile = path.join(dir, 'cars-test.jsonl');
    const objects = cars.testX.map((x) =>
      Object.fromEntries(cars.features.map((c, k): [string, number] => [c, x[k] ?? Number.NaN]).reverse()),
    );
    writeFileSync(rowsFile, objects.map((o) => JSON.stringify(o)).join('\n'));
    const jsonl = await runCli(['predict', path.join(cars.runDir, 'model'), '--data', rowsFile, '--format', 'jsonl']);
    expect(jsonl.code).toBe(0);
    const values = jsonl.stdout
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { value: number }).value);
    expect(Math.abs(rSquared(cars.testLabels.map(Number), values) - runRSquared(cars))).toBeLessThanOrEqual(0.01);
  });

  it("evaluate on the run's test rows reproduces summary.json's test figures", async () => {
    for (const trained of [penguins, cars]) {
      const result = await runCli(['evaluate', trained.runDir, '--data', trained.testCsv]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      const figures = JSON.parse(result.stdout) as Record<string, number>;
      expect(figures['count']).toBe(trained.testLabels.length);
      for (const [name, value] of Object.entries(trained.test)) {
        // Same model and rows; only float rounding differs (the standardisation now runs inside the model).
        expect(figures[name], name).toBeCloseTo(value, 3);
      }
    }
  });

  it('a file whose columns differ from the training columns gets one line naming them, exit 3', async () => {
    const data = path.join(dir, 'renamed.csv');
    const header = [...penguins.features.map((c) => (c === 'Body Mass (g)' ? 'Mass' : c)), 'Species', 'Island'];
    const rows = penguins.testX.map((x, i) => [...x, penguins.testLabels[i] ?? '', 'Biscoe']);
    writeFileSync(data, toCsv({ header, rows }));
    for (const command of ['predict', 'evaluate']) {
      const result = await runCli([command, penguins.runDir, '--data', data]);
      expect(result.code).toBe(3);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^ringtrain: .*renamed\.csv:1: columns do not match the model's: missing "Body Mass \(g\)"; extra "Mass", "Island"/,
      );
    }
    // evaluate needs the label column; predict does not.
    const unlabelled = path.join(dir, 'unlabelled.csv');
    const table = { header: penguins.features, rows: penguins.testX };
    writeFileSync(unlabelled, toCsv(table));
    expect((await runCli(['predict', penguins.runDir, '--data', unlabelled])).code).toBe(0);
    const evaluated = await runCli(['evaluate', penguins.runDir, '--data', unlabelled]);
    expect(evaluated.code).toBe(3);
    expect(evaluated.stderr.trim()).toMatch(
      /^ringtrain: .*unlabelled\.csv:1: columns do not match the model's: missing "Species"/,
    );
  });

  it('predict --out is atomic: a failed predict leaves the old file whole and no temp file behind', async () => {
    const outDir = path.join(dir, 'atomic');
    mkdirSync(outDir);
    const out = path.join(outDir, 'predictions.jsonl');
    writeFileSync(out, 'previous\n');
    const failed = await runCli(['predict', penguins.runDir, '--data', cars.testCsv, '--out', out]);
    expect(failed.code).toBe(3);
    expect(readFileSync(out, 'utf8')).toBe('previous\n');
    const ok = await runCli(['predict', penguins.runDir, '--data', penguins.testCsv, '--out', out]);
    expect(ok.code).toBe(0);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(penguins.testLabels.length);
    expect(JSON.parse(lines[0] ?? '')).toHaveProperty('probabilities.Adelie');
    expect(readdirSync(outDir)).toEqual(['predictions.jsonl']);
  });

  it('a folder without a model is one line, exit 10', async () => {
    const result = await runCli(['predict', dir, '--data', penguins.testCsv]);
    expect(result.code).toBe(10);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^ringtrain: model .*: holds no model\.json; pass a run folder/);
  });
});

describe('a model trained without column names (xor) reads columns in file order', () => {
  const dir = tempDir();
  let runDir: string;
  let train: Record<string, number>;

  beforeAll(async () => {
    runDir = path.join(dir, 'xor-run');
    const job = {
      name: 'xor',
      seed: 1,
      data: { format: 'xor', samples: 4 },
      model: {
        input: [2],
        layers: [
          { type: 'dense', units: 4, activation: 'tanh' },
          { type: 'dense', units: 1, activation: 'sigmoid' },
        ],
      },
      loss: 'binaryCrossentropy',
      metrics: ['binaryAccuracy'],
      optimizer: { type: 'adam', learningRate: 0.05 },
      training: { epochs: 150, batchSize: 4 },
      workers: 1,
      backend: 'cpu',
      checkpoint: { everySteps: 0, keep: 1, atEpochEnd: false },
    };
    const result = await runCli(['train', writeJob(dir, job), '--out', runDir]);
    if (result.code !== 0) throw new Error(`training xor failed (${result.code}):\n${result.stderr}`);
    train = (JSON.parse(readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as { train: Record<string, number> })
      .train;
  });

  it("predict and evaluate take every column but 'label'; a wrong count is one line, exit 3", async () => {
    const corners = path.join(dir, 'corners.csv');
    writeFileSync(corners, 'a,b,label\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n');
    const predicted = await runCli(['predict', runDir, '--data', corners]);
    expect(predicted.code).toBe(0);
    const lines = predicted.stdout.trim().split('\n');
    expect(lines[0]).toBe('class,p(0),p(1)');
    // The run's train split is the four corners; its own figure says how many it gets right.
    const right = lines.slice(1).filter((line, i) => line.split(',')[0] === ['0', '1', '1', '0'][i]).length;
    expect(right / 4).toBe(train['binaryAccuracy']);
    const evaluated = await runCli(['evaluate', runDir, '--data', corners]);
    expect(evaluated.code).toBe(0);
    const figures = JSON.parse(evaluated.stdout) as Record<string, number>;
    expect(figures['binaryAccuracy']).toBe(train['binaryAccuracy']);
    expect(figures['loss']).toBeCloseTo(train['loss'] as number, 4);

    const wide = path.join(dir, 'wide.csv');
    writeFileSync(wide, 'a,b,c\n0,0,0\n');
    const refused = await runCli(['predict', runDir, '--data', wide]);
    expect(refused.code).toBe(3);
    expect(refused.stderr.trim()).toMatch(
      /^ringtrain: .*wide\.csv:1: has 3 feature columns \(every column but "label"\), but the model takes 2/,
    );
  });
});
