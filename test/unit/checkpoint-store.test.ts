import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CheckpointStore } from '../../coordinator/run/checkpoint-store.js';
import { sha256Hex } from '../../shared/atomic-file.js';
import { CheckpointError } from '../../shared/errors.js';

const HASH = 'aaaaaaaaaaaaaaaa';
const DEAD_PID = 99_999_999;

let dir: string;
beforeEach(() => {
  dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ringtrain-ckpt-')), 'checkpoints');
});
afterEach(() => {
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});

/** A recognisable state blob for `step`. */
function stateFor(step: number): Uint8Array {
  return Uint8Array.from({ length: 64 + step }, (_, i) => (i * 31 + step) % 256);
}

async function saveSteps(store: CheckpointStore, steps: number[]): Promise<void> {
  for (const step of steps) {
    await store.save({
      step,
      epoch: Math.floor(step / 10),
      batchInEpoch: step % 10,
      state: stateFor(step),
      metrics: { 'train.loss': 1 / step },
    });
  }
}

const stateFile = (step: number): string => path.join(dir, `step-${String(step).padStart(9, '0')}`, 'state.bin');

describe('save and list', () => {
  it('writes state.bin and a manifest that pins its size and sha256', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    const info = await store.save({
      step: 123,
      epoch: 2,
      batchInEpoch: 5,
      state: stateFor(123),
      metrics: { 'validation.loss': 0.5, 'train.loss': NaN },
      extra: { earlyStopping: { wait: 1 } },
    });
    expect(info).toMatchObject({
      dir: path.join(dir, 'step-000000123'),
      step: 123,
      epoch: 2,
      batchInEpoch: 5,
      jobHash: HASH,
      metrics: { 'validation.loss': 0.5 },
    });
    const manifest = JSON.parse(fs.readFileSync(path.join(info.dir, 'manifest.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(manifest).toMatchObject({
      format: 'ringtrain-checkpoint',
      version: 1,
      step: 123,
      jobHash: HASH,
      files: { 'state.bin': { bytes: 187, sha256: sha256Hex(stateFor(123)) } },
      extra: { earlyStopping: { wait: 1 } },
    });
    expect(fs.readdirSync(dir)).toEqual(['step-000000123']);
  });

  it('keeps the newest `keep` plus the best, and the best mark survives a new store', async () => {
    const store = new CheckpointStore(dir, { keep: 2, jobHash: HASH });
    await saveSteps(store, [10, 20]);
    await store.markBest(10);
    await saveSteps(store, [30, 40, 50]);
    expect((await store.list()).map((c) => c.step)).toEqual([10, 40, 50]);
    const reopened = new CheckpointStore(dir, { keep: 1, jobHash: HASH });
    expect(await reopened.bestStep()).toBe(10);
    await reopened.prune();
    expect((await reopened.list()).map((c) => c.step)).toEqual([10, 50]);
  });

  it('replaces a checkpoint saved again at the same step', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    await saveSteps(store, [5]);
    await store.save({ step: 5, epoch: 9, batchInEpoch: 0, state: new Uint8Array([7]) });
    const loaded = await store.load(5);
    expect([...loaded.state]).toEqual([7]);
    expect(loaded.info.epoch).toBe(9);
    expect(fs.readdirSync(dir)).toEqual(['step-000000005']);
  });

  it('refuses to mark a step that has no checkpoint', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    await expect(store.markBest(7)).rejects.toThrow(CheckpointError);
  });
});

describe('loadLatestValid', () => {
  it('returns undefined when there is no checkpoint', async () => {
    expect(await new CheckpointStore(dir, { keep: 3, jobHash: HASH }).loadLatestValid()).toBeUndefined();
  });

  it('returns the newest checkpoint and its exact state', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    await saveSteps(store, [1, 2, 3]);
    const latest = await store.loadLatestValid();
    expect(latest?.info.step).toBe(3);
    expect(latest?.state).toEqual(stateFor(3));
    expect(latest?.warnings).toEqual([]);
  });

  it('skips a truncated state.bin with a warning naming it and falls back', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    await saveSteps(store, [1, 2]);
    fs.truncateSync(stateFile(2), 10);
    const latest = await store.loadLatestValid();
    expect(latest?.info.step).toBe(1);
    expect(latest?.state).toEqual(stateFor(1));
    expect(latest?.warnings).toHaveLength(1);
    expect(latest?.warnings[0]).toContain(stateFile(2));
    expect(latest?.warnings[0]).toMatch(/truncated/);
  });

  it('skips a state.bin with one flipped byte and falls back', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    await saveSteps(store, [1, 2, 3]);
    const bytes = fs.readFileSync(stateFile(3));
    bytes[17] = (bytes[17] ?? 0) ^ 0x01;
    fs.writeFileSync(stateFile(3), bytes);
    const latest = await store.loadLatestValid();
    expect(latest?.info.step).toBe(2);
    expect(latest?.warnings).toEqual([expect.stringContaining(`${stateFile(3)}: checksum mismatch`)]);
    await expect(store.load(3)).rejects.toThrow(`checkpoint ${stateFile(3)}: checksum mismatch`);
  });

  it('ignores directories a crash left without a manifest, and prune clears dead temp dirs', async () => {
    const store = new CheckpointStore(dir, { keep: 3, jobHash: HASH });
    await saveSteps(store, [1, 2]);
    const torn = path.join(dir, 'step-000000009');
    fs.mkdirSync(torn);
    fs.writeFileSync(path.join(torn, 'state.bin'), 'partial');
    const deadTemp = path.join(dir, `.tmp-step-10-${DEAD_PID}-abcd0123`);
    fs.mkdirSync(deadTemp);
    fs.writeFileSync(path.join(deadTemp, 'state.bin'), 'partial');

    expect((await store.list()).map((c) => c.step)).toEqual([1, 2]);
    const latest = await store.loadLatestValid();
    expect(latest?.info.step).toBe(2);
    expect(latest?.warnings).toEqual([expect.stringContaining(path.join(torn, 'manifest.json'))]);
    await store.prune();
    expect(fs.existsSync(deadTemp)).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual(['step-000000001', 'step-000000002', 'step-000000009']);
  });

  it('refuses checkpoints written by a different job', async () => {
    await saveSteps(new CheckpointStore(dir, { keep: 3, jobHash: HASH }), [4]);
    const other = new CheckpointStore(dir, { keep: 3, jobHash: 'bbbbbbbbbbbbbbbb' });
    const message = `was written by a different job (hash ${HASH}, this job bbbbbbbbbbbbbbbb)`;
    await expect(other.loadLatestValid()).rejects.toThrow(message);
    await expect(other.loadLatestValid()).rejects.toBeInstanceOf(CheckpointError);
    await expect(other.load(4)).rejects.toThrow(message);
  });
});
