import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CheckpointStore, type CheckpointSaveInput } from '../../coordinator/run/checkpoint-store.js';
import { sha256Hex } from '../../shared/atomic-file.js';
import { CheckpointError, StorageFullError } from '../../shared/errors.js';
import { mountTmpfs, tmpfsUnavailable, type Tmpfs } from '../helpers/tmpfs.js';

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

describe('pruning never costs the newest verified checkpoint', () => {
  it('keeps an older verified checkpoint when the newest ones are corrupt', async () => {
    await saveSteps(new CheckpointStore(dir, { keep: 3, jobHash: HASH }), [1, 2]);
    const bytes = fs.readFileSync(stateFile(2));
    bytes[0] = (bytes[0] ?? 0) ^ 0xff;
    fs.writeFileSync(stateFile(2), bytes);
    const reopened = new CheckpointStore(dir, { keep: 1, jobHash: HASH });
    await reopened.prune();
    expect((await reopened.list()).map((c) => c.step)).toEqual([1, 2]);
    expect((await reopened.loadLatestValid())?.info.step).toBe(1);
  });
});

describe.skipIf(tmpfsUnavailable !== undefined)('on a disk with room for two checkpoints (tmpfs)', () => {
  // Each checkpoint is a 100 KiB state plus a one-page manifest; 300 KiB holds two, not three.
  const STATE_BYTES = 100 * 1024;
  let disk: Tmpfs;
  let ckptDir: string;
  beforeEach(() => {
    disk = mountTmpfs(300 * 1024);
    ckptDir = path.join(disk.dir, 'checkpoints');
  });
  afterEach(() => disk.remove());

  const big = (step: number): CheckpointSaveInput => ({
    step,
    epoch: 0,
    batchInEpoch: step,
    state: new Uint8Array(STATE_BYTES).fill(step),
  });
  const steps = async (store: CheckpointStore): Promise<number[]> => (await store.list()).map((c) => c.step);

  it('keep = 3 still saves every checkpoint: the older ones give way, the newest verified stays', async () => {
    const store = new CheckpointStore(ckptDir, { keep: 3, jobHash: HASH });
    await store.save(big(1));
    await store.save(big(2));
    await store.save(big(3));
    expect(await steps(store)).toEqual([2, 3]);
    // A resume on the same disk (a new store) gets past the step where space ran out.
    const resumed = new CheckpointStore(ckptDir, { keep: 3, jobHash: HASH });
    expect((await resumed.loadLatestValid())?.info.step).toBe(3);
    await resumed.save(big(4));
    expect(await steps(resumed)).toEqual([3, 4]);
    expect([...(await resumed.load(4)).state.subarray(0, 2)]).toEqual([4, 4]);
    expect(fs.readdirSync(ckptDir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });

  it('keeps the best checkpoint as well when it makes room', async () => {
    const store = new CheckpointStore(ckptDir, { keep: 3, jobHash: HASH });
    await store.save({ ...big(1), state: new Uint8Array(40 * 1024) });
    await store.markBest(1);
    await store.save(big(2));
    await store.save(big(3));
    await store.save(big(4));
    expect(await steps(store)).toEqual([1, 3, 4]);
  });

  it('a checkpoint that cannot fit at all is a StorageFullError (exit 13); the last one stays intact', async () => {
    const store = new CheckpointStore(ckptDir, { keep: 2, jobHash: HASH });
    await store.save(big(1));
    const error = await store.save({ ...big(2), state: new Uint8Array(250 * 1024) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StorageFullError);
    expect((error as StorageFullError).exitCode).toBe(13);
    expect((error as Error).message).toMatch(
      /^cannot write .*step-000000002: no space left \(ENOSPC: the disk is full, or a quota or file-size limit was reached\); free some space, then continue with: ringtrain train --resume /,
    );
    expect(fs.readdirSync(ckptDir)).toEqual(['step-000000001']);
    expect((await store.loadLatestValid())?.info.step).toBe(1);
  });
});
