// Packed folders and data modules: `ringtrain pack` round trips for every built-in format (the
// same rows, labels, metadata and hash as loading the data whole), lazy detection of truncated,
// corrupt and missing shards naming the shard, manifest-vs-job checks, the read-ahead, and data
// modules (a good one packs; a wrong shape or a throwing fill names the module).
import { mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { memorySource, openDataSource, type DataSource } from '../../shared/data/data-source.js';
import { loadDataset, SPLIT_NAMES, type SplitName } from '../../shared/data/dataset.js';
import { encodeIdx } from '../../shared/data/idx-source.js';
import { readManifest } from '../../shared/data/packed-manifest.js';
import { openPackedDir } from '../../shared/data/packed-source.js';
import { verifyPackedDir } from '../../shared/data/packed-verify.js';
import { packDataSource } from '../../shared/data/packed-writer.js';
import { DatasetError, FlagError } from '../../shared/errors.js';
import { resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ringtrain-packed-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function job(data: Record<string, unknown>, input: number[], loss: string, units: number): Job {
  const activation = loss === 'meanSquaredError' ? 'linear' : 'softmax';
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
  };
  return resolveJob(raw, 'test job', {}, dir);
}

/** Every row of a split, read through the source in a shuffled order and put back in place. */
function allRows(source: DataSource, split: SplitName): { x: Float32Array; y: Float32Array } {
  const count = source[split].count;
  const order = Uint32Array.from({ length: count }, (_, i) => (i * 7 + 3) % count);
  if (count > 0 && new Set(order).size !== count) order.forEach((_, i) => (order[i] = i));
  const x = new Float32Array(count * source.featureSize);
  const y = new Float32Array(count * source.labelSize);
  const rowX = new Float32Array(count * source.featureSize);
  const rowY = new Float32Array(count * source.labelSize);
  source.fill(split, order, rowX, rowY);
  order.forEach((row, i) => {
    x.set(rowX.subarray(i * source.featureSize, (i + 1) * source.featureSize), row * source.featureSize);
    y.set(rowY.subarray(i * source.labelSize, (i + 1) * source.labelSize), row * source.labelSize);
  });
  return { x, y };
}

let packs = 0;
/** Packs the job's data into small shards (several per split) and opens the folder as a packed job would. */
async function packJob(given: Job, shardBytes = 512): Promise<{ out: string; source: DataSource; packed: DataSource }> {
  const source = await openDataSource(given);
  const out = path.join(dir, `pack-${packs++}`);
  packDataSource(source, given, out, { shardBytes });
  const packedJob = { ...given, data: { format: 'packed' as const, path: out, verify: 'checksum' as const } };
  return { out, source, packed: await openDataSource(packedJob) };
}

function expectSameData(packed: DataSource, source: DataSource): void {
  expect(packed.hash).toBe(source.hash);
  for (const key of [
    'name',
    'inputShape',
    'featureSize',
    'labelSize',
    'task',
    'numClasses',
    'classNames',
    'columns',
    'normalization',
  ] as const)
    expect(packed[key], key).toEqual(source[key]);
  for (const split of SPLIT_NAMES) {
    expect(packed[split].count).toBe(source[split].count);
    const a = allRows(packed, split);
    const b = allRows(source, split);
    expect(Buffer.from(a.x.buffer).equals(Buffer.from(b.x.buffer)), `${split} x`).toBe(true);
    expect(Buffer.from(a.y.buffer).equals(Buffer.from(b.y.buffer)), `${split} y`).toBe(true);
  }
}

describe('pack round trip', () => {
  test("xor: same rows, labels and hash; the hash is loadDataset's", async () => {
    const given = job(
      { format: 'xor', samples: 50, noise: 0.2, split: { validation: 0.2, test: 0.1 } },
      [2],
      'categoricalCrossentropy',
      2,
    );
    const { out, source, packed } = await packJob(given, 64);
    expectSameData(packed, source);
    expect(packed.hash).toBe(loadDataset(given).hash);
    const manifest = readManifest(out);
    expect(manifest.splits.train.shards.length).toBeGreaterThan(1);
    expect(manifest.splits.train.shards.reduce((n, s) => n + s.records, 0)).toBe(source.train.count);
  });

  test('mnist (sparse labels)', async () => {
    const given = job({ format: 'mnist', limit: 120 }, [28, 28, 1], 'sparseCategoricalCrossentropy', 10);
    const { packed, source } = await packJob(given, 40_000);
    expectSameData(packed, source);
  });

  test('csv with class names, columns and normalisation (regression labels standardised)', async () => {
    const lines = ['a,b,kind,price'];
    for (let i = 0; i < 30; i++) lines.push(`${i},${(i * 3) % 7},${['cat', 'dog'][i % 2]},${i * 1.5 + 2}`);
    writeFileSync(path.join(dir, 'houses.csv'), `${lines.join('\n')}\n`);
    const regression = job(
      { format: 'csv', path: 'houses.csv', label: 'price', task: 'regression' },
      [2],
      'meanSquaredError',
      1,
    );
    // 'kind' is text: the plain csv reader wants numbers, so pack the numeric columns only.
    writeFileSync(
      path.join(dir, 'numeric.csv'),
      `${lines
        .map((l) =>
          l
            .split(',')
            .filter((_, c) => c !== 2)
            .join(','),
        )
        .join('\n')}\n`,
    );
    const numeric = { ...regression, data: { ...regression.data, path: path.join(dir, 'numeric.csv') } } as Job;
    const a = await packJob(numeric);
    expect(a.packed.normalization?.labelStd).toBeGreaterThan(0);
    expectSameData(a.packed, a.source);
    writeFileSync(
      path.join(dir, 'kinds.csv'),
      `${lines
        .map((l) => {
          const c = l.split(',');
          return `${c[0]},${c[1]},${c[2]}`;
        })
        .join('\n')}\n`,
    );
    const classes = job(
      { format: 'csv', path: 'kinds.csv', label: 'kind', task: 'classification' },
      [2],
      'categoricalCrossentropy',
      2,
    );
    const b = await packJob(classes);
    expect(b.packed.classNames).toEqual(['cat', 'dog']);
    expect(b.packed.columns).toEqual({ features: ['a', 'b'], label: 'kind' });
    expectSameData(b.packed, b.source);
  });

  test('idx', async () => {
    const count = 12;
    const pixels = Uint8Array.from({ length: count * 6 }, (_, i) => (i * 37) % 256);
    const labels = Uint8Array.from({ length: count }, (_, i) => i % 3);
    writeFileSync(path.join(dir, 'p.idx3'), encodeIdx([count, 2, 3], pixels));
    writeFileSync(path.join(dir, 'p.idx1'), encodeIdx([count], labels));
    const given = job(
      { format: 'idx', images: 'p.idx3', labels: 'p.idx1', split: { validation: 0.25, test: 0.25 } },
      [2, 3],
      'categoricalCrossentropy',
      3,
    );
    const { packed, source } = await packJob(given, 100);
    expectSameData(packed, source);
  });

  test('an in-memory Dataset as a source: any loadDataset result packs', () => {
    const given = job({ format: 'xor', samples: 8 }, [2], 'sparseCategoricalCrossentropy', 2);
    const source = memorySource(loadDataset(given));
    const out = path.join(dir, 'from-dataset');
    packDataSource(source, given, out);
    expectSameData(openPackedDir(out), source);
  });

  test('pack refuses an existing --out and leaves no temporary folder behind', async () => {
    const given = job({ format: 'xor', samples: 8 }, [2], 'sparseCategoricalCrossentropy', 2);
    const out = path.join(dir, 'exists');
    packDataSource(await openDataSource(given), given, out);
    expect(() => packDataSource(memorySource(loadDataset(given)), given, out)).toThrow(FlagError);
    const broken: DataSource = {
      ...memorySource(loadDataset(given)),
      fill: () => {
        throw new Error('source broke');
      },
    };
    expect(() => packDataSource(broken, given, path.join(dir, 'broken'))).toThrow('source broke');
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(dir).filter((n) => n.startsWith('broken'))).toEqual([]);
  });

  test('read-ahead: rows read ahead are served (from the read, not the file) to the fill that asks for them', async () => {
    const given = job({ format: 'xor', samples: 40, noise: 0.3 }, [2], 'categoricalCrossentropy', 2);
    const { out, packed, source } = await packJob(given, 1024);
    const rows = Uint32Array.of(5, 1, 33, 17);
    const other = Uint32Array.of(2, 3);
    packed.readAhead?.('train', rows);
    packed.readAhead?.('train', other); // two orders queued: both kept
    await packed.settle?.('train', rows);
    await packed.settle?.('train', other);
    // Overwrite the shard's records (same size): only rows read before that keep their values.
    writeFileSync(
      path.join(out, 'train-00000.bin'),
      Buffer.alloc(readManifest(out).splits.train.shards[0]?.bytes ?? 0),
    );
    const read = (indices: Uint32Array): Float32Array => {
      const x = new Float32Array(indices.length * 2);
      packed.fill('train', indices, x, new Float32Array(indices.length * 2));
      return x;
    };
    const expected = (indices: Uint32Array): Float32Array => {
      const x = new Float32Array(indices.length * 2);
      source.fill('train', indices, x, new Float32Array(indices.length * 2));
      return x;
    };
    expect(read(rows)).toEqual(expected(rows));
    expect(read(other)).toEqual(expected(other));
    // Each read-ahead serves one fill: the same rows again come from the (now zeroed) file.
    expect(read(rows)).toEqual(new Float32Array(8));
  });
});

describe('bad packed data', () => {
  async function fresh(): Promise<{ out: string; packedJob: Job }> {
    const given = job({ format: 'xor', samples: 64, noise: 0.1 }, [2], 'categoricalCrossentropy', 2);
    const { out } = await packJob(given, 128);
    return { out, packedJob: { ...given, data: { format: 'packed', path: out, verify: 'checksum' } } };
  }

  function fillAll(source: DataSource): void {
    const count = source.train.count;
    source.fill(
      'train',
      Uint32Array.from({ length: count }, (_, i) => i),
      new Float32Array(count * 2),
      new Float32Array(count * 2),
    );
  }

  test('a corrupt shard: pack --verify names it, and training fails at the first read of it, naming it', async () => {
    const { out, packedJob } = await fresh();
    const file = path.join(out, 'train-00001.bin');
    const bytes = readFileSync(file);
    bytes[5] = (bytes[5] ?? 0) ^ 0xff;
    writeFileSync(file, bytes);
    expect(() => verifyPackedDir(out)).toThrow(/1 of \d+ shards are bad: train-00001\.bin \(checksum does not match/);
    const source = await openDataSource(packedJob); // size is right: opening succeeds
    source.fill('train', Uint32Array.of(0), new Float32Array(2), new Float32Array(2)); // shard 0 is fine
    expect(() => fillAll(source)).toThrow(DatasetError);
    expect(() => fillAll(source)).toThrow(/train-00001\.bin: shard checksum does not match the manifest/);
    // verify: size skips the checksum (for speed), so the corrupt rows are served.
    const sizeOnly = await openDataSource({ ...packedJob, data: { format: 'packed', path: out, verify: 'size' } });
    expect(() => fillAll(sizeOnly)).not.toThrow();
  });

  test('a truncated shard fails at open, naming it', async () => {
    const { out, packedJob } = await fresh();
    truncateSync(path.join(out, 'train-00002.bin'), 40);
    await expect(openDataSource(packedJob)).rejects.toThrow(
      /train-00002\.bin: shard is 40 bytes, the manifest says 128 \(truncated/,
    );
    expect(() => verifyPackedDir(out)).toThrow(/train-00002\.bin \(40 bytes, the manifest says 128: truncated/);
  });

  test('a missing shard and a missing manifest are named', async () => {
    const { out, packedJob } = await fresh();
    unlinkSync(path.join(out, 'train-00003.bin'));
    await expect(openDataSource(packedJob)).rejects.toThrow(
      /train-00003\.bin: file not found; every worker needs the whole packed folder/,
    );
    expect(() => verifyPackedDir(out)).toThrow(/train-00003\.bin \(missing\)/);
    unlinkSync(path.join(out, 'manifest.json'));
    await expect(openDataSource(packedJob)).rejects.toThrow(
      /manifest\.json: file not found; is .* a folder written by ringtrain pack\?/,
    );
  });

  test('a manifest that is not one of ours is named, with the field that is wrong', async () => {
    const { out, packedJob } = await fresh();
    const file = path.join(out, 'manifest.json');
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as { info: Record<string, unknown> };
    delete manifest.info['inputShape'];
    writeFileSync(file, JSON.stringify(manifest));
    await expect(openDataSource(packedJob)).rejects.toThrow(
      /manifest\.json: is not a ringtrain pack manifest \(info\.inputShape: .*\); pack the data again/,
    );
    writeFileSync(file, '{ not json');
    await expect(openDataSource(packedJob)).rejects.toThrow(/manifest\.json: is not valid JSON; pack the data again/);
  });

  test('a manifest that does not match the job: input shape, loss', async () => {
    const { packedJob } = await fresh();
    await expect(openDataSource({ ...packedJob, model: { ...packedJob.model, input: [1, 2] } })).rejects.toThrow(
      /holds samples of shape \[2\], but model.input is \[1, 2\]; set model.input: \[2\]/,
    );
    await expect(openDataSource({ ...packedJob, loss: 'sparseCategoricalCrossentropy' })).rejects.toThrow(
      /labels were packed for loss categoricalCrossentropy, but the job's loss is sparseCategoricalCrossentropy; pack the data again/,
    );
  });
});

describe('data modules', () => {
  function writeModule(name: string, body: string): string {
    const file = path.join(dir, name);
    writeFileSync(file, body);
    return file;
  }
  const GOOD = `
export function createDataset(job) {
  return {
    count: 30, inputShape: [3], labelSize: 1, task: 'regression',
    fill(indices, x, y) {
      indices.forEach((s, i) => { x.set([s, s * 2, job.seed], i * 3); y[i] = s / 10; });
    },
  };
}`;

  test('a module source splits by the job, fills by index, and packs like any source', async () => {
    writeModule('good-data.mjs', GOOD);
    const given = job(
      { format: 'module', path: 'good-data.mjs', split: { validation: 0.2, test: 0.1 } },
      [3],
      'meanSquaredError',
      1,
    );
    const source = await openDataSource(given);
    expect([source.train.count, source.validation.count, source.test.count]).toEqual([21, 6, 3]);
    const all = [...SPLIT_NAMES].flatMap((split) => {
      const { x } = allRows(source, split);
      return Array.from({ length: source[split].count }, (_, i) => x[i * 3] as number);
    });
    expect(all.sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    const { packed } = await packJob(given, 100);
    expect(Object.fromEntries(SPLIT_NAMES.map((s) => [s, allRows(packed, s)]))).toEqual(
      Object.fromEntries(SPLIT_NAMES.map((s) => [s, allRows(source, s)])),
    );
  });

  test('a wrong shape, a missing export and a throwing fill name the module', async () => {
    const wrongShape = writeModule('wrong-shape.mjs', GOOD.replace('inputShape: [3]', 'inputShape: [4]'));
    await expect(
      openDataSource(job({ format: 'module', path: wrongShape }, [3], 'meanSquaredError', 1)),
    ).rejects.toThrow(`${wrongShape}: data module's samples have shape [4], but model.input is [3]`);
    const noCount = writeModule('no-count.mjs', GOOD.replace('count: 30,', ''));
    await expect(openDataSource(job({ format: 'module', path: noCount }, [3], 'meanSquaredError', 1))).rejects.toThrow(
      /no-count\.mjs: data module's createDataset returned a bad dataset \(count: /,
    );
    const noExport = writeModule('no-export.mjs', 'export const x = 1;\n');
    await expect(openDataSource(job({ format: 'module', path: noExport }, [3], 'meanSquaredError', 1))).rejects.toThrow(
      /no-export\.mjs: data module must export a function createDataset\(job\)/,
    );
    const throwing = writeModule(
      'throws.mjs',
      GOOD.replace('indices.forEach', 'if (indices.length > 1) throw new Error("disk gone"); indices.forEach'),
    );
    const source = await openDataSource(job({ format: 'module', path: throwing }, [3], 'meanSquaredError', 1));
    expect(() => source.fill('train', Uint32Array.of(0, 1), new Float32Array(6), new Float32Array(2))).toThrow(
      /throws\.mjs: data module's fill threw for samples \[\d+, \d+\]: .*disk gone/,
    );
    await expect(
      openDataSource(job({ format: 'module', path: 'nowhere.mjs' }, [3], 'meanSquaredError', 1)),
    ).rejects.toThrow(/nowhere\.mjs: data module: file not found/);
  });
});
