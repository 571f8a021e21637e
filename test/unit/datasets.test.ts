// Datasets: every format's parsing, the split contract, label layouts, normalisation fitted on
// train only, and one clear DatasetError (file and, for csv, line) for each malformed input.
// Fixture files are written into a temp dir per run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { datasetSummary, loadDataset, splitOf, type Dataset, type Split } from '../../shared/data/dataset.js';
import { encodeIdx } from '../../shared/data/idx-source.js';
import { DatasetError } from '../../shared/errors.js';
import { loadJob, resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ringtrain-datasets-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeFixture(name: string, content: string | Uint8Array): string {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
}

/** A resolved job over `data` with a one-dense-layer model of `units` outputs. */
function jobFor(
  data: Record<string, unknown>,
  input: number[],
  loss: string,
  units: number,
  extra: Record<string, unknown> = {},
): Job {
  const activation = loss === 'binaryCrossentropy' ? 'sigmoid' : loss === 'meanSquaredError' ? 'linear' : 'softmax';
  const layers =
    input.length > 1
      ? [{ type: 'flatten' }, { type: 'dense', units, activation }]
      : [{ type: 'dense', units, activation }];
  const raw = {
    data,
    model: { input, layers },
    loss,
    optimizer: { type: 'sgd', learningRate: 0.1 },
    training: { epochs: 1, batchSize: 4 },
    ...extra,
  };
  return resolveJob(raw, 'test job', {}, dir);
}

/** Rows of a split as arrays. */
function rows(matrix: Float32Array, count: number): number[][] {
  const width = count === 0 ? 0 : matrix.length / count;
  return Array.from({ length: count }, (_, i) => [...matrix.subarray(i * width, (i + 1) * width)]);
}

function columnStats(split: Split, column: number): { mean: number; std: number } {
  const values = rows(split.x, split.count).map((r) => r[column] as number);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean, std: Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length) };
}

function expectDatasetError(load: () => unknown, file: string, line: number | undefined, reason: RegExp): void {
  let caught: unknown;
  try {
    load();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DatasetError);
  const error = caught as DatasetError;
  expect(error.file).toBe(file);
  expect(error.line).toBe(line);
  expect(error.message.startsWith(line === undefined ? `${file}: ` : `${file}:${line}: `)).toBe(true);
  expect(error.reason).toMatch(reason);
}

describe('mnist', () => {
  let ds: Dataset;
  beforeAll(() => {
    ds = loadDataset(loadJob(undefined));
  });

  test('the default job splits 10,000 digits into 8000 / 1000 / 1000', () => {
    expect([ds.train.count, ds.validation.count, ds.test.count]).toEqual([8000, 1000, 1000]);
    expect(ds.train.x.length).toBe(8000 * 784);
    expect(ds.test.y.length).toBe(1000 * 10);
    expect(ds).toMatchObject({
      name: 'mnist',
      inputShape: [784],
      featureSize: 784,
      labelSize: 10,
      task: 'classification',
      numClasses: 10,
    });
    expect(ds.normalization).toBeUndefined();
  });

  test('labels are one-hot and pixels lie in [0, 1]', () => {
    for (const split of [ds.train, ds.validation, ds.test]) {
      for (const label of rows(split.y, split.count)) {
        expect(label.filter((v) => v === 1).length).toBe(1);
        expect(label.filter((v) => v === 0).length).toBe(9);
      }
      expect(split.x.every((v) => v >= 0 && v <= 1)).toBe(true);
    }
    expect(ds.train.x.some((v) => v === 1)).toBe(true);
    expect(splitOf(ds, 'validation')).toBe(ds.validation);
  });

  test('the hash is deterministic and follows the seed', () => {
    const again = loadDataset(loadJob(undefined));
    expect(ds.hash).toMatch(/^[0-9a-f]{16}$/);
    expect(again.hash).toBe(ds.hash);
    // Byte comparison: a deep toEqual over 6.3M floats takes tens of seconds.
    expect(Buffer.from(again.train.x.buffer).equals(Buffer.from(ds.train.x.buffer))).toBe(true);
    expect(loadDataset(loadJob(undefined, { seed: 7 })).hash).not.toBe(ds.hash);
  });

  test('limit takes the first digits round-robin over classes, in any label layout', () => {
    const limited = loadDataset(
      jobFor({ format: 'mnist', limit: 100 }, [28, 28, 1], 'sparseCategoricalCrossentropy', 10),
    );
    expect([limited.train.count, limited.validation.count, limited.test.count]).toEqual([80, 10, 10]);
    expect(limited.labelSize).toBe(1);
    const classes = [limited.train, limited.validation, limited.test].flatMap((s) => [...s.y]);
    for (let digit = 0; digit < 10; digit++) expect(classes.filter((c) => c === digit).length).toBe(10);
  });

  test('a model input of the wrong size is a DatasetError', () => {
    expect(() => loadDataset(jobFor({ format: 'mnist', limit: 10 }, [100], 'categoricalCrossentropy', 10))).toThrow(
      /784 features per sample, but model.input \[100\]/,
    );
    // The model's output against the labels is the coordinator's probe's check (model-probe.test.ts).
  });
});

describe('csv', () => {
  // Ten rows with distinct `a`, so each standardised row can be traced back to its source.
  const classRows = Array.from(
    { length: 10 },
    (_, i) => `${i + 1},${(i * 7) % 10},${['dog', 'cat', '"bird, small"'][i % 3]}`,
  );
  const classCsv = ['a,b,species', ...classRows].join('\n') + '\n';
  const speciesOf = (a: number): string => ['dog', 'cat', 'bird, small'][(a - 1) % 3] as string;

  test('classification: sorted string classes, one-hot, quoted fields', () => {
    const file = writeFixture('classes.csv', classCsv);
    const ds = loadDataset(
      jobFor(
        {
          format: 'csv',
          path: 'classes.csv',
          label: 'species',
          task: 'classification',
          normalize: false,
          split: { validation: 0.2, test: 0.2 },
        },
        [2],
        'categoricalCrossentropy',
        3,
      ),
    );
    expect(ds.name).toBe(`csv:${file}`);
    expect(ds.classNames).toEqual(['bird, small', 'cat', 'dog']);
    expect([ds.train.count, ds.validation.count, ds.test.count]).toEqual([6, 2, 2]);
    for (const split of [ds.train, ds.validation, ds.test]) {
      const labels = rows(split.y, split.count);
      rows(split.x, split.count).forEach(([a], i) =>
        expect(ds.classNames?.[labels[i]?.indexOf(1) ?? -1]).toBe(speciesOf(a as number)),
      );
    }
  });

  test('classification: numeric classes sort numerically; sparse and binary layouts', () => {
    writeFixture('numeric.csv', 'x,label\n1,10\n2,2\n3,1.0\n4,10\n5,2\n6,1\n');
    const sparse = loadDataset(
      jobFor(
        {
          format: 'csv',
          path: 'numeric.csv',
          label: 'label',
          task: 'classification',
          split: { validation: 0, test: 0 },
        },
        [1],
        'sparseCategoricalCrossentropy',
        3,
      ),
    );
    expect(sparse.classNames).toEqual(['1', '2', '10']);
    expect(sparse.labelSize).toBe(1);
    expect(new Set(sparse.train.y)).toEqual(new Set([0, 1, 2]));

    writeFixture('binary.csv', 'x;ok\n1;no\n2;yes\n3;yes\n4;no\n');
    const binary = loadDataset(
      jobFor(
        {
          format: 'csv',
          path: 'binary.csv',
          label: 'ok',
          task: 'classification',
          delimiter: ';',
          split: { validation: 0, test: 0 },
        },
        [1],
        'binaryCrossentropy',
        1,
      ),
    );
    expect(binary).toMatchObject({ task: 'binary', labelSize: 1, classNames: ['no', 'yes'] });
    expect([...binary.train.y].sort()).toEqual([0, 0, 1, 1]);
  });

  test('features are standardised with statistics of the training split only', () => {
    writeFixture('norm.csv', classCsv);
    const ds = loadDataset(
      jobFor(
        {
          format: 'csv',
          path: 'norm.csv',
          label: 'species',
          task: 'classification',
          split: { validation: 0.2, test: 0.2 },
        },
        [2],
        'categoricalCrossentropy',
        3,
      ),
    );
    const norm = ds.normalization;
    if (norm === undefined) throw new Error('expected normalization');
    for (let c = 0; c < 2; c++) {
      const { mean, std } = columnStats(ds.train, c);
      expect(mean).toBeCloseTo(0, 5);
      expect(std).toBeCloseTo(1, 5);
    }
    // Undoing the transform recovers exactly the source rows, and the mean is the train mean, not the overall 5.5.
    const recovered = [ds.train, ds.validation, ds.test].flatMap((s) =>
      rows(s.x, s.count).map(([a, b]) => [
        Math.round((a as number) * (norm.featureStd[0] as number) + (norm.featureMean[0] as number)),
        Math.round((b as number) * (norm.featureStd[1] as number) + (norm.featureMean[1] as number)),
      ]),
    );
    expect(recovered.sort((p, q) => (p[0] as number) - (q[0] as number))).toEqual(
      classRows.map((r) => r.split(',').slice(0, 2).map(Number)),
    );
    const trainA = rows(ds.train.x, ds.train.count).map(([a]) =>
      Math.round((a as number) * (norm.featureStd[0] as number) + (norm.featureMean[0] as number)),
    );
    expect(norm.featureMean[0]).toBeCloseTo(trainA.reduce((p, q) => p + q, 0) / trainA.length, 5);
    expect(norm.featureMean[0]).not.toBeCloseTo(5.5, 5);
  });

  test('regression: labels standardised on train, recoverable in their own units; constant column gets std 1', () => {
    const lines = Array.from({ length: 20 }, (_, i) => `${i},${7},${2 * i + 3}`);
    writeFixture('reg.csv', ['x,const,y', ...lines].join('\r\n'));
    const ds = loadDataset(
      jobFor({ format: 'csv', path: 'reg.csv', label: 'y', task: 'regression' }, [2], 'meanSquaredError', 1),
    );
    const { featureMean, featureStd, labelMean, labelStd } = ds.normalization ?? { featureMean: [], featureStd: [] };
    if (labelMean === undefined || labelStd === undefined) throw new Error('expected label normalisation');
    expect([ds.task, ds.labelSize, ds.train.count]).toEqual(['regression', 1, 16]);
    expect(featureStd[1]).toBe(1);
    expect(featureMean[1]).toBe(7);
    for (const split of [ds.train, ds.validation, ds.test]) {
      rows(split.x, split.count).forEach(([xs], i) => {
        const x = (xs as number) * (featureStd[0] as number) + (featureMean[0] as number);
        expect((split.y[i] as number) * labelStd + labelMean).toBeCloseTo(2 * x + 3, 3);
      });
    }
    const trainLabels = [...ds.train.y];
    expect(trainLabels.reduce((a, b) => a + b, 0) / trainLabels.length).toBeCloseTo(0, 5);
    expect(() =>
      loadDataset(
        jobFor({ format: 'csv', path: 'reg.csv', label: 'y', task: 'regression' }, [2], 'categoricalCrossentropy', 1),
      ),
    ).toThrow(/regression target needs loss meanSquaredError/);
  });

  const malformed: Array<[string, string, number | undefined, RegExp]> = [
    ['empty.csv', '', 1, /file is empty/],
    ['header-only.csv', 'a,b,y\n', 1, /header row but no data rows/],
    ['no-label.csv', 'a,b,c\n1,2,3\n', 1, /label column "y" not found; the columns are "a", "b", "c"/],
    ['columns.csv', 'a,b,y\n1,2,0\n1,2\n', 3, /expected 3 columns.*found 2/],
    ['text.csv', 'a,b,y\n1,2,0\n1,abc,1\n', 3, /column "b": "abc" is not a number/],
    ['nan.csv', 'a,b,y\n1,2,0\n\nNaN,2,1\n', 4, /column "a": NaN is not a finite number/],
    ['inf.csv', 'a,b,y\n1,-Infinity,0\n', 2, /column "b": -Infinity is not a finite number/],
    ['empty-cell.csv', 'a,b,y\n1,,0\n', 2, /column "b" is empty/],
    // Finite as a double, Infinity as float32: it would poison every gradient it touches.
    ['float32.csv', 'a,b,y\n1,2,0\n1e39,2,1\n', 3, /column "a": 1e39 is outside the float32 range/],
    ['float32-label.csv', 'a,b,y\n1,2,0\n1,2,-4e38\n', 3, /column "y": -4e38 is outside the float32 range/],
    ['quote.csv', 'a,b,y\n1,"2,0\n', 2, /unterminated quoted field/],
  ];
  test.each(malformed)('%s is a DatasetError naming the file and line', (name, content, line, reason) => {
    const file = writeFixture(name, content);
    expectDatasetError(
      () =>
        loadDataset(jobFor({ format: 'csv', path: name, label: 'y', task: 'regression' }, [2], 'meanSquaredError', 1)),
      file,
      line,
      reason,
    );
  });

  const badLabels: Array<[string, string, number, RegExp]> = [
    ['nan-label.csv', 'a,b,y\n1,2,cat\n3,4,NaN\n5,6,dog\n', 3, /column "y" \(the label\) is NaN/],
    ['nan-numeric-label.csv', 'a,b,y\n1,2,0\n3,4,1\n5,6,nan\n', 4, /column "y" \(the label\) is nan/],
    ['inf-label.csv', 'a,b,y\n1,2,0\n3,4,-Infinity\n5,6,1\n', 3, /column "y" \(the label\) is -Infinity/],
    ['empty-label.csv', 'a,b,y\n1,2,cat\n3,4,""\n5,6,dog\n', 3, /column "y" \(the label\) is empty/],
  ];
  test.each(badLabels)(
    'classification: %s is a DatasetError naming the row, not a class',
    (name, content, line, reason) => {
      const file = writeFixture(name, content);
      expectDatasetError(
        () =>
          loadDataset(
            jobFor(
              { format: 'csv', path: name, label: 'y', task: 'classification' },
              [2],
              'categoricalCrossentropy',
              2,
            ),
          ),
        file,
        line,
        reason,
      );
    },
  );

  test('a missing file is a DatasetError naming it', () => {
    expectDatasetError(
      () =>
        loadDataset(
          jobFor({ format: 'csv', path: 'absent.csv', label: 'y', task: 'regression' }, [2], 'meanSquaredError', 1),
        ),
      path.join(dir, 'absent.csv'),
      undefined,
      /file not found/,
    );
  });
});

describe('idx', () => {
  const count = 12;
  const pixels = Uint8Array.from({ length: count * 2 * 3 }, (_, i) => (i * 37) % 256);
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  const idxJob = (images: string, labelFile: string, units = 10): Job =>
    jobFor(
      { format: 'idx', images, labels: labelFile, split: { validation: 0.25, test: 0.25 } },
      [6],
      'categoricalCrossentropy',
      units,
    );

  test('raw and gzipped files load to the same data, pixels scaled to [0, 1]', () => {
    writeFixture('img.idx3', encodeIdx([count, 2, 3], pixels));
    writeFixture('lbl.idx1', encodeIdx([count], labels));
    writeFixture('img.idx3.gz', gzipSync(encodeIdx([count, 2, 3], pixels)));
    writeFixture('lbl.idx1.gz', gzipSync(encodeIdx([count], labels)));
    const raw = loadDataset(idxJob('img.idx3', 'lbl.idx1'));
    const gz = loadDataset(idxJob('img.idx3.gz', 'lbl.idx1.gz'));
    expect(gz.hash).toBe(raw.hash);
    expect([raw.train.count, raw.validation.count, raw.test.count]).toEqual([6, 3, 3]);
    expect(raw.labelSize).toBe(10);
    const source = rows(
      Float32Array.from(pixels, (p) => p / 255),
      count,
    );
    for (const split of [raw.train, raw.validation, raw.test]) {
      const ys = rows(split.y, split.count);
      rows(split.x, split.count).forEach((row, i) => {
        const at = source.findIndex((r) => r.every((v, j) => v === row[j]));
        expect(at).toBeGreaterThanOrEqual(0);
        expect(ys[i]?.indexOf(1)).toBe(labels[at]);
      });
    }
  });

  test('labels beyond 9 widen the one-hot to max label + 1', () => {
    writeFixture('img12.idx3', encodeIdx([count, 2, 3], pixels));
    writeFixture(
      'lbl12.idx1',
      encodeIdx(
        [count],
        Uint8Array.from(labels, (l, i) => (i === 5 ? 11 : l)),
      ),
    );
    expect(loadDataset(idxJob('img12.idx3', 'lbl12.idx1', 12)).labelSize).toBe(12);
  });

  test('bad magic, truncation, corrupt gzip and count mismatch are DatasetErrors naming the file', () => {
    const images = writeFixture('ok.idx3', encodeIdx([count, 2, 3], pixels));
    const labelFile = writeFixture('ok.idx1', encodeIdx([count], labels));
    expectDatasetError(
      () => loadDataset(idxJob('ok.idx1', 'ok.idx1')),
      labelFile,
      undefined,
      /bad magic number 0x00000801; expected 0x00000803/,
    );
    const cut = writeFixture('cut.idx3', encodeIdx([count, 2, 3], pixels).subarray(0, 40));
    expectDatasetError(() => loadDataset(idxJob('cut.idx3', 'ok.idx1')), cut, undefined, /truncated/);
    const cutHeader = writeFixture('cut-header.idx1', encodeIdx([count], labels).subarray(0, 6));
    expectDatasetError(() => loadDataset(idxJob('ok.idx3', 'cut-header.idx1')), cutHeader, undefined, /truncated/);
    const badGz = writeFixture('bad.idx3.gz', gzipSync(encodeIdx([count, 2, 3], pixels)).subarray(0, 20));
    expectDatasetError(() => loadDataset(idxJob('bad.idx3.gz', 'ok.idx1')), badGz, undefined, /cannot be decompressed/);
    writeFixture('few.idx1', encodeIdx([count - 1], labels.subarray(0, count - 1)));
    expectDatasetError(
      () => loadDataset(idxJob('ok.idx3', 'few.idx1')),
      images,
      undefined,
      /12 images but .*few.idx1 holds 11 labels/,
    );
    expectDatasetError(
      () => loadDataset(idxJob('absent.idx3', 'ok.idx1')),
      path.join(dir, 'absent.idx3'),
      undefined,
      /file not found/,
    );
  });
});

describe('xor', () => {
  test('binary labels, all samples in train with split 0/0, empty validation and test', () => {
    const ds = loadDataset(jobFor({ format: 'xor', samples: 8 }, [2], 'binaryCrossentropy', 1));
    expect(ds).toMatchObject({ task: 'binary', labelSize: 1, featureSize: 2 });
    expect([ds.train.count, ds.validation.count, ds.test.count]).toEqual([8, 0, 0]);
    expect(ds.validation.x.length + ds.validation.y.length + ds.test.x.length).toBe(0);
    const expected = new Map([
      ['0,0', 0],
      ['0,1', 1],
      ['1,0', 1],
      ['1,1', 0],
    ]);
    rows(ds.train.x, 8).forEach((corner, i) => expect(ds.train.y[i]).toBe(expected.get(corner.join(','))));
    expect(datasetSummary(ds)).toMatch(
      /^xor: 8 train \/ 0 validation \/ 0 test, input \[2\], binary 0\/1, hash [0-9a-f]{16}$/,
    );
  });

  test('categorical gives one-hot of 2; MSE gives 0/1', () => {
    const oneHot = loadDataset(jobFor({ format: 'xor', samples: 4 }, [2], 'categoricalCrossentropy', 2));
    expect([oneHot.labelSize, oneHot.train.y.length]).toEqual([2, 8]);
    expect(rows(oneHot.train.y, 4).every((r) => r[0]! + r[1]! === 1)).toBe(true);
    const mse = loadDataset(jobFor({ format: 'xor', samples: 4 }, [2], 'meanSquaredError', 1));
    expect([mse.task, mse.labelSize]).toEqual(['binary', 1]);
  });

  test('noise is seeded: same seed same samples, other seed other samples', () => {
    const noisy = (seed: number): Dataset =>
      loadDataset(
        jobFor(
          { format: 'xor', samples: 40, noise: 0.1, split: { validation: 0.25, test: 0 } },
          [2],
          'binaryCrossentropy',
          1,
          { seed },
        ),
      );
    const a = noisy(1);
    expect([a.train.count, a.validation.count]).toEqual([30, 10]);
    expect(a.train.x.some((v) => v !== 0 && v !== 1)).toBe(true);
    expect(noisy(1).train.x).toEqual(a.train.x);
    expect(noisy(2).hash).not.toBe(a.hash);
  });

  test('a split that leaves no training sample is a DatasetError', () => {
    expect(() =>
      loadDataset(
        jobFor({ format: 'xor', samples: 2, split: { validation: 0.45, test: 0.5 } }, [2], 'binaryCrossentropy', 1),
      ),
    ).toThrow(DatasetError);
  });
});
