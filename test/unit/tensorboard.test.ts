import * as fs from 'node:fs';
import * as path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32c, maskedCrc32c } from '../../coordinator/tensorboard/crc32c.js';
import { decodeEvent, encodeEvent, FILE_VERSION, readEventFile } from '../../coordinator/tensorboard/event-codec.js';
import { frameTfRecord, readTfRecords } from '../../coordinator/tensorboard/tfrecord.js';
import { TensorBoardWriter } from '../../coordinator/tensorboard/tensorboard-writer.js';
import { readMetrics, RunDirectory } from '../../coordinator/run/run-directory.js';
import { tempDir } from '../helpers/cli.js';

const silent = pino({ level: 'silent' });

describe('crc32c', () => {
  // RFC 3720 (iSCSI) appendix B.4, and the check value of the CRC catalogue.
  it('matches the published test vectors', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('masks as TFRecord does: rotate right 15, add 0xa282ead8', () => {
    const crc = 0xe3069283;
    const expected = (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
    expect(maskedCrc32c(Buffer.from('123456789'))).toBe(expected);
  });
});

describe('TFRecord framing', () => {
  it('frames length, its CRC, data and its CRC, and reads them back', () => {
    const a = Buffer.from('first');
    const b = Buffer.alloc(300, 7);
    const file = Buffer.concat([frameTfRecord(a), frameTfRecord(b)]);
    expect(file.length).toBe(16 + a.length + 16 + b.length);
    expect(file.readBigUInt64LE(0)).toBe(5n);
    expect(file.readUInt32LE(8)).toBe(maskedCrc32c(file.subarray(0, 8)));
    expect(file.readUInt32LE(12 + 5)).toBe(maskedCrc32c(a));
    const { records, tornBytes } = readTfRecords(file);
    expect(records.map((r) => Buffer.from(r).toString('hex'))).toEqual([a.toString('hex'), b.toString('hex')]);
    expect(tornBytes).toBe(0);
  });

  it('refuses a flipped data byte and reports a torn last record', () => {
    const file = Buffer.concat([frameTfRecord(Buffer.from('abc')), frameTfRecord(Buffer.from('defgh'))]);
    const flipped = Buffer.from(file);
    flipped[13] = (flipped[13] ?? 0) ^ 1;
    expect(() => readTfRecords(flipped)).toThrow(/data CRC mismatch/);
    const lengthFlipped = Buffer.from(file);
    lengthFlipped[0] = 4;
    expect(() => readTfRecords(lengthFlipped)).toThrow(/length CRC mismatch/);
    const torn = readTfRecords(file.subarray(0, file.length - 2));
    expect(torn.records).toHaveLength(1);
    expect(torn.tornBytes).toBe(file.length - 2 - 19);
  });
});

describe('Event encoding', () => {
  it('round-trips file_version and scalar summaries with TensorFlow field numbers', () => {
    const first = encodeEvent({ wallTime: 1.5, step: 0, fileVersion: FILE_VERSION });
    // field 1 (double, wire type 1) = 0x09; field 3 (string, wire type 2) = 0x1a.
    expect(first[0]).toBe(0x09);
    expect(Buffer.from(first).includes(Buffer.from([0x1a, FILE_VERSION.length]))).toBe(true);
    expect(decodeEvent(first)).toMatchObject({ wallTime: 1.5, fileVersion: FILE_VERSION, what: 'fileVersion' });
    const scalar = decodeEvent(
      encodeEvent({ wallTime: 2, step: 7, summary: { value: [{ tag: 'train/loss', simpleValue: 0.25 }] } }),
    );
    expect(scalar.step).toBe(7);
    expect(scalar.summary?.value[0]).toMatchObject({ tag: 'train/loss', simpleValue: 0.25 });
  });
});

describe('TensorBoardWriter', () => {
  const runs: RunDirectory[] = [];
  afterEach(async () => {
    for (const run of runs.splice(0)) await run.close();
  });

  it('writes the scalars of step, validation and recovery records, matching metrics.jsonl', async () => {
    const run = await RunDirectory.create({ explicitDir: path.join(tempDir(), 'run'), name: 'tb' });
    runs.push(run);
    const writer = TensorBoardWriter.open(run, silent, new Date(Date.UTC(2026, 0, 1)));
    const ranks = [
      { rank: 0, samples: 8, computeMs: 3.5, allreduceMs: 1, allreduceWaitMs: 0.5, optimizerMs: 0.1, idleMs: 0 },
      { rank: 1, samples: 8, computeMs: 2.5, allreduceMs: 2, allreduceWaitMs: 1.5, optimizerMs: 0.1, idleMs: 0 },
    ];
    const step = { type: 'step', epoch: 0, learningRate: 0.01, samples: 16, gradNorm: 2, skipped: false, ranks };
    run.appendMetrics({ ...step, step: 0, loss: 1.25, wallMs: 8 });
    run.appendMetrics({ ...step, step: 1, loss: 0.75, wallMs: 16 });
    run.appendMetrics({ type: 'validation', step: 2, epoch: 0, 'train.loss': 1, 'validation.loss': 0.5 });
    run.appendMetrics({ type: 'event', kind: 'recovery', rank: 1, step: 2, detail: 'x' });
    writer.close();
    const files = fs.readdirSync(path.join(run.path, 'tensorboard'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.1767225600\./);
    const events = readEventFile(path.join(run.path, 'tensorboard', files[0] ?? ''));
    expect(events[0]?.fileVersion).toBe(FILE_VERSION);
    const scalars = events.slice(1).flatMap((e) => (e.summary?.value ?? []).map((v) => [e.step, v.tag, v.simpleValue]));
    const loss = readMetrics(run.metricsFile).filter((r) => r['type'] === 'step');
    expect(scalars.filter(([, tag]) => tag === 'train/loss')).toEqual(
      loss.map((r) => [Number(r['step']) + 1, 'train/loss', Math.fround(Number(r['loss']))]),
    );
    expect(scalars).toContainEqual([1, 'train/samples_per_second', 2000]);
    expect(scalars).toContainEqual([2, 'train/samples_per_second', 1000]);
    expect(scalars).toContainEqual([1, 'ranks/1/wait_ms', 1.5]);
    expect(scalars).toContainEqual([1, 'ranks/0/compute_ms', 3.5]);
    expect(scalars).toContainEqual([1, 'ring/world_size', 2]);
    expect(scalars).toContainEqual([1, 'train/gradient_norm', 2]);
    expect(scalars).toContainEqual([2, 'validation/loss', 0.5]);
    expect(scalars).toContainEqual([2, 'ring/recoveries', 1]);
  });

  it('a resumed run adds a file and carries its counts on from metrics.jsonl', async () => {
    const out = path.join(tempDir(), 'run');
    const first = await RunDirectory.create({ explicitDir: out, name: 'tb' });
    await first.writeJob('name: tb\n');
    first.appendMetrics({ type: 'event', kind: 'recovery', rank: 0, step: 3, detail: 'x' });
    await first.close();
    const resumed = await RunDirectory.open(out);
    runs.push(resumed);
    const writer = TensorBoardWriter.open(resumed, silent, new Date(Date.UTC(2026, 0, 2)));
    resumed.appendMetrics({ type: 'event', kind: 'recovery', rank: 1, step: 9, detail: 'y' });
    writer.close();
    const events = readEventFile(writer.file);
    expect(events.slice(1).map((e) => [e.step, e.summary?.value[0]?.tag, e.summary?.value[0]?.simpleValue])).toEqual([
      [9, 'ring/recoveries', 2],
    ]);
  });
});
