// Data as people have it, through the real CLI on 2 worker processes: the raw-data examples
// (examples/make-raw-data.mjs, examples/raw-data/*.yaml) shrunk to a few epochs. A CSV with an ID
// column, string categories and empty cells trains and its exported model predicts raw rows; an
// image folder and a text corpus train; a corrupt image and an unseen category fail with exit 3
// and one line naming the file.
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { REPO_ROOT, RUN_LIMIT_MS, runCli, tempDir, writeJob } from '../helpers/cli.js';

const EXAMPLES = path.join(REPO_ROOT, 'examples');

type JobObject = Record<string, unknown> & { data: Record<string, unknown>; training: Record<string, unknown> };

let data = '';
beforeAll(() => {
  data = tempDir('ringtrain-raw-data-');
  const args = [path.join(EXAMPLES, 'make-raw-data.mjs'), data, '--per-class', '20', '--chapters', '1'];
  const result = spawnSync(process.execPath, args, { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
});

/** examples/raw-data/<name> with its data path pointed at `data`/<sub>. */
function example(name: string, sub: string): JobObject {
  const job = parse(readFileSync(path.join(EXAMPLES, 'raw-data', name), 'utf8')) as JobObject;
  job.data['path'] = path.join(data, sub);
  return job;
}

interface Run {
  out: string;
  summary: { worldSize: number; steps: number; train: Record<string, number>; test: Record<string, number> };
  stepLosses: number[];
}

async function train(job: JobObject): Promise<Run> {
  const dir = tempDir('ringtrain-raw-run-');
  const out = path.join(dir, 'run');
  const result = await runCli(['train', writeJob(dir, job), '--workers', '2', '--out', out]);
  expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Run['summary'];
  expect(summary.worldSize).toBe(2);
  const stepLosses = readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'step')
    .map((r) => Number(r['loss']));
  return { out, summary, stepLosses };
}

describe('raw data (2 workers, real processes)', () => {
  it(
    'a CSV with an ID column, string categories and empty cells trains, and its model predicts raw rows',
    async () => {
      const job = example('cars-mpg.yaml', 'cars.csv');
      job.training['epochs'] = 15;
      const { out, summary } = await train(job);
      // Miles per gallon spread about 7.8 (std); predicting the mean misses by about 6.5 on average.
      expect(summary.test['mae']).toBeLessThan(4);
      const resolved = parse(readFileSync(path.join(out, 'job.yaml'), 'utf8')) as { model: { input: number[] } };
      expect(resolved.model.input).toEqual([20]); // 5 numbers + 3 origins + 12 years

      // Raw rows: strings, the ID column, a gap in Horsepower, columns in another order.
      const rows = path.join(data, 'rows.csv');
      writeFileSync(
        rows,
        [
          'Year,Origin,Name,Cylinders,Displacement,Horsepower,Weight_in_lbs,Acceleration',
          '1970-01-01,USA,big v8,8,350,165,4300,11',
          '1982-01-01,Japan,small four,4,90,,2000,16',
        ].join('\n'),
      );
      const predicted = await runCli(['predict', out, '--data', rows]);
      expect(predicted.code, predicted.stderr).toBe(0);
      const [header, heavy, light] = predicted.stdout.trim().split('\n');
      expect(header).toBe('value');
      expect(Number(light)).toBeGreaterThan(Number(heavy) + 5); // a light 1982 four beats a 1970 V8
      const held = await runCli(['predict', out, '--data', path.join(data, 'cars-new.csv')]);
      expect(held.code, held.stderr).toBe(0);
      expect(held.stdout.trim().split('\n')).toHaveLength(21);

      writeFileSync(
        rows,
        [
          'Year,Origin,Name,Cylinders,Displacement,Horsepower,Weight_in_lbs,Acceleration',
          '1975-01-01,Mars,x,4,90,70,2000,16',
        ].join('\n'),
      );
      const unknown = await runCli(['predict', out, '--data', rows]);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr.trim()).toBe(
        `ringtrain: ${rows}:2: column "Origin": "Mars" is not a category the model was trained on ("Europe", "Japan", "USA")`,
      );
    },
    3 * RUN_LIMIT_MS,
  );

  it('an image folder of real digits trains (loss falls); a corrupt image is exit 3 naming it', async () => {
    const job = example('digits-images.yaml', 'digits');
    job.training['epochs'] = 3;
    const { summary, stepLosses } = await train(job);
    expect(summary.steps).toBe(15); // 200 digits, 140 for training, batches of 32: 5 per epoch
    expect(summary.train['loss'] ?? Number.NaN).toBeLessThan(stepLosses[0] ?? 0);

    const broken = path.join(data, 'digits', '7', 'broken.png');
    copyFileSync(path.join(data, 'digits', '7', '0000.png'), broken);
    writeFileSync(broken, readFileSync(broken).subarray(0, 50));
    const dir = tempDir('ringtrain-raw-run-');
    try {
      const failed = await runCli(['train', writeJob(dir, job), '--workers', '2', '--out', path.join(dir, 'run')]);
      expect(failed.code).toBe(3);
      expect(failed.stderr).toMatch(
        new RegExp(`^ringtrain: ${broken}: cannot be decoded \\(.+\\); replace or remove it$`, 'm'),
      );
    } finally {
      rmSync(broken); // the folder is shared with the packing test
    }
  });

  it('a text corpus trains as a next-character model (loss falls)', async () => {
    const job = example('moby-chars.yaml', 'moby');
    job.training['epochs'] = 1;
    const { summary, stepLosses } = await train(job);
    expect(summary.steps).toBeGreaterThan(20);
    // ln(64) ≈ 4.16 is a uniform guess over the 64 classes.
    expect(stepLosses[0]).toBeGreaterThan(3.8);
    expect(summary.test['loss']).toBeLessThan(3.6);
  });

  it('the image folder and the text corpus pack, verify and train from their packed folders on 2 workers, the digits step for step as unpacked', async () => {
    const dir = tempDir('ringtrain-raw-pack-');
    const packed = async (source: JobObject, name: string, packedJob: string): Promise<JobObject> => {
      const out = path.join(dir, name);
      const packedRun = await runCli(['pack', writeJob(dir, source), '--out', out]);
      expect(packedRun.code, packedRun.stderr).toBe(0);
      const verified = await runCli(['pack', '--verify', out]);
      expect(verified.code, verified.stderr).toBe(0);
      const job = parse(readFileSync(path.join(EXAMPLES, 'raw-data', packedJob), 'utf8')) as JobObject;
      job.data['path'] = out;
      job.training = { ...job.training, epochs: source.training['epochs'] };
      return job;
    };
    const digits = example('digits-images.yaml', 'digits');
    digits.training['epochs'] = 1;
    const unpacked = await train(digits);
    const fromPack = await train(await packed(digits, 'digits-packed', 'digits-packed.yaml'));
    expect(fromPack.stepLosses).toHaveLength(unpacked.stepLosses.length);
    expect(fromPack.stepLosses).toEqual(unpacked.stepLosses);

    const moby = example('moby-chars.yaml', 'moby');
    moby.training['epochs'] = 1;
    const text = await train(await packed(moby, 'moby-packed', 'moby-packed.yaml'));
    expect(text.summary.steps).toBeGreaterThan(20);
    expect(text.summary.test['loss']).toBeLessThan(3.6);
  });
});
