// CSV as people have it: string columns one-hot or index encoded, an ID column ignored, empty
// cells per `missing`, model.input inferred from the encoded columns; and `predict`'s reader
// encoding raw rows with the vocabulary exported in the model's metadata.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readModelData } from '../../lib/model-data.js';
import { parseCsv } from '../../shared/data/csv-parse.js';
import { readCsv } from '../../shared/data/csv-source.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { DatasetError } from '../../shared/errors.js';
import { resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { modelMetadata } from '../../worker/replica/deployable-model.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ringtrain-raw-csv-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CARS = [
  'id,origin,hp,weight,mpg',
  'a1,USA,130,3504,18',
  'a2,Europe,,2372,27',
  'a3,Japan,95,2228,25',
  'a4,USA,150,3433,16',
  'a5,Japan,88,2130,31',
  'a6,Europe,71,1835,30',
].join('\n');

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** A regression job on `file` with no model.input: the data decides it. */
function jobOn(file: string, data: Record<string, unknown> = {}): Job {
  const raw = {
    data: { format: 'csv', path: file, label: 'mpg', task: 'regression', normalize: false, ...data },
    model: { layers: [{ type: 'dense', units: 1, activation: 'linear' }] },
    loss: 'meanSquaredError',
    optimizer: { type: 'sgd', learningRate: 0.1 },
    training: { epochs: 1, batchSize: 2 },
  };
  return resolveJob(raw, 'test job', {}, dir);
}

function datasetError(run: () => unknown): DatasetError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DatasetError);
    return error as DatasetError;
  }
  throw new Error('expected a DatasetError');
}

/** Every sample's features, in file order. */
function rowsOf(job: Job): number[][] {
  if (job.data.format !== 'csv') throw new Error('a csv job');
  const raw = readCsv(job.data, job.seed);
  const width = raw.featureSize;
  return Array.from({ length: raw.count }, (_, i) => Array.from(raw.x.subarray(i * width, (i + 1) * width)));
}

const NO_SPLIT = { split: { validation: 0, test: 0 } };

describe('csv as it comes', () => {
  test('an empty cell is an error naming file, line and column by default', () => {
    const file = write('cars.csv', CARS);
    const error = datasetError(() => jobOn(file, { ignore: ['id'] }));
    expect(error.message).toBe(
      `${file}:3: column "hp" is empty; fill the cell, or set data.missing: drop (the row) or mean in the job`,
    );
  });

  test('an ID column of strings is one-hot by default, and breaks nothing once ignored', () => {
    const file = write('cars.csv', CARS);
    // Without ignore, "id" is one more string column: 5 categories (of the rows kept), one-hot.
    expect(jobOn(file, { missing: 'drop' }).model.input).toEqual([5 + 3 + 1 + 1]);
    const job = jobOn(file, { ignore: ['id'], missing: 'drop', ...NO_SPLIT });
    expect(job.model.input).toEqual([3 + 1 + 1]); // origin one-hot (Europe, Japan, USA), hp, weight
    const rows = rowsOf(job);
    expect(rows).toHaveLength(5); // line 3 dropped
    expect(rows[0]).toEqual([0, 0, 1, 130, 3504]);
    expect(rows[1]).toEqual([0, 1, 0, 95, 2228]);
    expect(loadDataset(job).columns).toEqual({
      features: ['origin', 'hp', 'weight'],
      label: 'mpg',
      ignored: ['id'],
      encodings: [
        { column: 'origin', kind: 'onehot', categories: ['Europe', 'Japan', 'USA'] },
        { column: 'hp', kind: 'number' },
        { column: 'weight', kind: 'number' },
      ],
    });
  });

  test('index encoding is one feature: the position in the sorted vocabulary', () => {
    const file = write('cars.csv', CARS);
    const job = jobOn(file, { ignore: ['id'], missing: 'drop', encode: { origin: 'index' }, ...NO_SPLIT });
    expect(job.model.input).toEqual([3]);
    expect(rowsOf(job).map((r) => r[0])).toEqual([2, 1, 2, 1, 0]);
  });

  test('encode turns a numeric column into categories (numbers keyed by value: "8.0" is "8")', () => {
    const file = write('cyl.csv', ['cyl,mpg', '8,1', '4,2', '8.0,3', '6,4'].join('\n'));
    const job = jobOn(file, { encode: { cyl: 'onehot' }, ...NO_SPLIT });
    expect(loadDataset(job).columns?.encodings).toEqual([
      { column: 'cyl', kind: 'onehot', categories: ['4', '6', '8'] },
    ]);
    expect(rowsOf(job)).toEqual([
      [0, 0, 1],
      [1, 0, 0],
      [0, 0, 1],
      [0, 1, 0],
    ]);
  });

  test('a changed file is read afresh, not served from the parse cache', () => {
    const file = write('change.csv', ['hp,mpg', '1,2', '3,4'].join('\n'));
    expect(rowsOf(jobOn(file, NO_SPLIT))).toEqual([[1], [3]]);
    writeFileSync(file, ['hp,mpg', '5,2', '7,4'].join('\n')); // same size
    expect(rowsOf(jobOn(file, NO_SPLIT))).toEqual([[5], [7]]);
  });

  test('features selects and orders the columns', () => {
    const file = write('cars.csv', CARS);
    const job = jobOn(file, { features: ['weight', 'origin'], ...NO_SPLIT });
    expect(job.model.input).toEqual([4]);
    expect(rowsOf(job)[0]).toEqual([3504, 0, 0, 1]);
    expect(loadDataset(job).columns?.ignored).toEqual(['id', 'hp']);
  });

  test('missing: mean fills a number with the training rows mean, a string with its most frequent category', () => {
    const text = ['origin,hp,mpg', 'USA,100,1', ',200,2', 'Japan,,3', 'USA,300,4'].join('\n');
    const file = write('gaps.csv', text);
    const job = jobOn(file, { missing: 'mean', ...NO_SPLIT });
    const rows = rowsOf(job);
    expect(rows[1]).toEqual([0, 1, 200]); // origin: USA, the mode
    expect(rows[2]).toEqual([1, 0, 200]); // hp: mean of 100, 200, 300
    expect(loadDataset(job).columns?.encodings).toEqual([
      { column: 'origin', kind: 'onehot', categories: ['Japan', 'USA'], fill: 'USA' },
      { column: 'hp', kind: 'number', fill: 200 },
    ]);
  });

  test('missing: mean fits on the training split only', () => {
    const lines = ['hp,mpg', ...Array.from({ length: 40 }, (_, i) => `${i},${i}`), ',0'];
    const file = write('fit.csv', lines.join('\n'));
    const job = jobOn(file, { missing: 'mean', split: { validation: 0.25, test: 0.25 } });
    const fill = loadDataset(job).columns?.encodings?.[0];
    expect(fill?.kind).toBe('number');
    // Not the mean of all 40 values (19.5): some rows are held out.
    expect(fill?.kind === 'number' ? fill.fill : undefined).not.toBe(19.5);
  });

  test('a missing label is an error under every policy', () => {
    const file = write('nolabel.csv', ['hp,mpg', '1,2', '3,'].join('\n'));
    for (const missing of ['error', 'drop', 'mean'])
      expect(datasetError(() => jobOn(file, { missing })).message).toMatch(/:3: column "mpg" is empty/);
  });

  test('a numeric column with one stray string names the cell and the fix', () => {
    const file = write('stray.csv', ['hp,mpg', '1,2', '3,4', 'x7,5'].join('\n'));
    expect(datasetError(() => jobOn(file)).message).toBe(
      `${file}:4: column "hp": "x7" is not a number, but most of the column is; fix the cell, or set data.encode.hp: onehot (or index) to treat the column as categories`,
    );
  });

  test('unknown names in features, ignore or encode are errors naming the header', () => {
    const file = write('cars.csv', CARS);
    expect(datasetError(() => jobOn(file, { ignore: ['ID'] })).message).toMatch(
      /data\.ignore names column "ID", which is not in the header \("id", "origin"/,
    );
    expect(datasetError(() => jobOn(file, { features: ['mpg'] })).message).toMatch(/names the label column "mpg"/);
    expect(datasetError(() => jobOn(file, { encode: { nope: 'index' } })).message).toMatch(/data\.encode names/);
  });

  test('a given model.input that disagrees with the encoded columns is refused', () => {
    const file = write('cars.csv', CARS);
    const raw = {
      data: { format: 'csv', path: file, label: 'mpg', task: 'regression', ignore: ['id'], missing: 'drop' },
      model: { input: [3], layers: [{ type: 'dense', units: 1 }] },
      loss: 'meanSquaredError',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 2 },
    };
    const job = resolveJob(raw, 'test job', {}, dir);
    expect(datasetError(() => loadDataset(job)).message).toMatch(/has 5 features per sample, but model.input \[3\]/);
  });
});

describe("predict's reader encodes raw rows with the exported encodings", () => {
  test('strings one-hot, ID column skipped, mean-filled gaps, columns in any order', () => {
    const train = write('train.csv', CARS);
    const job = jobOn(train, { ignore: ['id'], missing: 'mean', ...NO_SPLIT });
    const metadata = modelMetadata(job, loadDataset(job));
    expect(metadata.featureEncodings?.[0]).toEqual({
      column: 'origin',
      kind: 'onehot',
      categories: ['Europe', 'Japan', 'USA'],
      fill: 'Europe', // two of each: a tie goes to the first in vocabulary order
    });
    expect(metadata.ignoredColumns).toEqual(['id']);
    const rows = write(
      'rows.csv',
      ['weight,id,origin,hp', '2000,z9,Japan,90', '2500,z8,,', '"3,000",z7,USA,1'].join('\n'),
    );
    const error = datasetError(() => readModelData(rows, metadata, { labels: false }));
    expect(error.message).toMatch(/rows\.csv:4: column "weight": "3,000" is not a number/);
    const good = write('good.csv', ['weight,id,origin,hp', '2000,z9,Japan,90', '2500,z8,,'].join('\n'));
    const data = readModelData(good, metadata, { labels: false });
    const hpMean = metadata.featureEncodings?.[1]?.fill as number;
    expect(Array.from(data.x)).toEqual([0, 1, 0, 90, 2000, 1, 0, 0, hpMean, 2500]);
  });

  test('a category the model never saw is an error naming the cell and the known ones', () => {
    const train = write('train.csv', CARS);
    const job = jobOn(train, { ignore: ['id'], missing: 'drop', ...NO_SPLIT });
    const metadata = modelMetadata(job, loadDataset(job));
    const rows = write('mars.csv', ['origin,hp,weight', 'Mars,90,2000'].join('\n'));
    expect(datasetError(() => readModelData(rows, metadata, { labels: false })).message).toBe(
      `${rows}:2: column "origin": "Mars" is not a category the model was trained on ("Europe", "Japan", "USA")`,
    );
    const gap = write('gap.csv', ['origin,hp,weight', 'USA,,2000'].join('\n'));
    expect(datasetError(() => readModelData(gap, metadata, { labels: false })).message).toBe(
      `${gap}:2: column "hp" is empty`,
    );
  });
});

describe('csv-parse: quoting and line numbers', () => {
  test('a quoted cell may hold the delimiter, doubled quotes and a line break; rows keep their first line', () => {
    const text = '\uFEFFname,note,y\r\n\r\n"a, b","say ""hi""",1\n c ,"two\nlines",2\nd,x"y,3\n';
    expect(parseCsv(text, ',', 'q.csv')).toEqual([
      { line: 1, cells: ['name', 'note', 'y'] },
      { line: 3, cells: ['a, b', 'say "hi"', '1'] },
      { line: 4, cells: ['c', 'two\nlines', '2'] },
      { line: 6, cells: ['d', 'x"y', '3'] },
    ]);
  });

  test('an unclosed quote names the file and line', () => {
    expect(datasetError(() => parseCsv('a,b\n1,"2,0\n', ',', 'q.csv')).message).toBe(
      'q.csv:2: unterminated quoted field: a quote opened here is never closed',
    );
  });
});
