// Durable checkpoints: checkpoints/step-<9-digit step>/{state.bin, manifest.json}.
//
// Invariants:
// - A checkpoint directory only ever appears under its final name complete: it is built in
//   `.tmp-step-…`, every file fsynced, manifest.json written last, then the directory renamed
//   into place and checkpoints/ fsynced. Deletion renames first, so it is atomic too.
// - Only a `step-*` directory with a valid manifest is a checkpoint; anything else is ignored.
// - state.bin is opaque here (the workers' encoded training state); the manifest pins its size
//   and sha256, checked on every load.
// - A checkpoint of another job (jobHash) is never loaded: resuming with a different job is a
//   user mistake, so loadLatestValid and load throw CheckpointError instead of skipping it.
//
// Pruning policy (so that a run, or a --resume on the same disk, needs room for one new
// checkpoint, not keep + 1):
// - Before a checkpoint is written, older ones are pruned to the newest keep - 1, so the disk
//   never holds more than `keep` while the new one is built.
// - If the write still finds no room (ENOSPC, EDQUOT, EFBIG), every checkpoint except the newest
//   verified one and the best is deleted, and the write is tried once more; a second failure is
//   a StorageFullError (exit 13), and the checkpoints left are intact.
// - Whatever the pass, the newest verified checkpoint (its files match its manifest; ones this
//   store wrote count as verified) and the best are never deleted, so a corrupt newer checkpoint
//   can never make pruning delete the last good state.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { fsyncDir, isProcessAlive, sha256Hex, writeFileAtomic, writeFileDurable } from '../../shared/atomic-file.js';
import {
  CheckpointError,
  describeError,
  errnoCode,
  isNotFound,
  StorageFullError,
  storageFullCode,
} from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';

const STATE_FILE = 'state.bin';
const MANIFEST_FILE = 'manifest.json';
const BEST_FILE = 'best.json';
const STEP_DIR = /^step-(\d{9})$/;
/** `.tmp-<label>-<pid>-<rand>`: build, set-aside and deletion dirs; none is ever a checkpoint. */
const TEMP_DIR = /^\.tmp-.*-(\d+)-[0-9a-f]+$/;

const manifestSchema = z.object({
  format: z.literal('ringtrain-checkpoint'),
  version: z.literal(1),
  step: z.number().int().nonnegative(),
  epoch: z.number().int().nonnegative(),
  batchInEpoch: z.number().int().nonnegative(),
  jobHash: z.string().min(1),
  createdAt: z.string(),
  files: z.record(
    z.string(),
    z.strictObject({ bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  ),
  metrics: z.record(z.string(), z.number()).optional(),
  extra: z.record(z.string(), z.unknown()).optional(),
});
type Manifest = z.output<typeof manifestSchema>;

export interface CheckpointInfo {
  dir: string;
  step: number;
  epoch: number;
  batchInEpoch: number;
  jobHash: string;
  /** ISO time the checkpoint was written. */
  createdAt: string;
  metrics?: Record<string, number>;
  /** Whatever the coordinator stored beside the state (early-stopping state, events, ...). */
  extra?: Record<string, unknown>;
}

export interface CheckpointSaveInput {
  step: number;
  epoch: number;
  batchInEpoch: number;
  state: Uint8Array;
  /** Non-finite values are dropped (JSON cannot hold them). */
  metrics?: Record<string, number>;
  extra?: Record<string, unknown>;
}

export interface CheckpointStoreOptions {
  /** Newest checkpoints kept by prune(); the best one is kept as well. */
  keep: number;
  /** jobHash() of the running job; checkpoints of other jobs are refused. */
  jobHash: string;
  logger?: Logger;
}

interface Entry {
  info: CheckpointInfo;
  manifest: Manifest;
}

export class CheckpointStore {
  private readonly keep: number;
  private readonly jobHash: string;
  private readonly logger: Logger | undefined;
  /** Temp dirs this process is writing right now; prune() must not take them for crash leftovers. */
  private readonly inFlight = new Set<string>();
  /** Steps this store wrote itself or read back whole: known verified without reading them again. */
  private readonly verified = new Set<number>();

  constructor(
    readonly dir: string,
    options: CheckpointStoreOptions,
  ) {
    if (!Number.isInteger(options.keep) || options.keep < 1)
      throw new RangeError(`keep must be a positive integer, got ${options.keep}`);
    this.keep = options.keep;
    this.jobHash = options.jobHash;
    this.logger = options.logger;
  }

  /**
   * Writes a checkpoint atomically (replacing one of the same step), making room first as the
   * pruning policy above says, then prunes to `keep`.
   */
  async save(input: CheckpointSaveInput): Promise<CheckpointInfo> {
    const manifest = this.manifestFor(input);
    const final = path.join(this.dir, stepDirName(input.step));
    await fsp.mkdir(this.dir, { recursive: true });
    await this.pruneQuietly(this.keep - 1);
    try {
      await this.write(final, manifest, input.state);
    } catch (error) {
      if (storageFullCode(error) === undefined) throw this.writeError(final, error);
      this.logger?.warn(
        { component: 'checkpoint-store', step: input.step, code: storageFullCode(error) },
        'no room for a new checkpoint; keeping only the newest verified one (and the best) and trying again',
      );
      await this.pruneQuietly(0);
      try {
        await this.write(final, manifest, input.state);
      } catch (again) {
        throw this.writeError(final, again);
      }
    }
    this.verified.add(input.step);
    await this.pruneQuietly(this.keep);
    return infoFrom(final, manifest);
  }

  /** Builds the checkpoint under a temp name and renames it into place; the temp never outlives a failure. */
  private async write(final: string, manifest: Manifest, state: Uint8Array): Promise<void> {
    const temp = this.tempPath(`step-${manifest.step}`);
    this.inFlight.add(temp);
    try {
      await fsp.mkdir(temp);
      await writeFileDurable(path.join(temp, STATE_FILE), state);
      await writeFileDurable(path.join(temp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      await fsyncDir(temp);
      await this.moveIntoPlace(temp, final);
    } catch (error) {
      await fsp.rm(temp, { recursive: true, force: true });
      throw error;
    } finally {
      this.inFlight.delete(temp);
    }
  }

  private writeError(final: string, cause: unknown): Error {
    const code = storageFullCode(cause);
    if (code !== undefined) return new StorageFullError(final, code, path.dirname(this.dir), { cause });
    return new CheckpointError(final, `cannot write: ${describeError(cause)}`, { cause });
  }

  /** Marks a checkpoint as the best (early stopping); it is kept even when older than the last `keep`. Persisted in checkpoints/best.json. */
  async markBest(step: number): Promise<void> {
    await this.readManifest(path.join(this.dir, stepDirName(step)), step);
    await writeFileAtomic(path.join(this.dir, BEST_FILE), `${JSON.stringify({ step })}\n`);
  }

  /** The step marked best, if any. */
  async bestStep(): Promise<number | undefined> {
    try {
      const parsed: unknown = JSON.parse(await fsp.readFile(path.join(this.dir, BEST_FILE), 'utf8'));
      const step = z.object({ step: z.number().int().nonnegative() }).safeParse(parsed);
      return step.success ? step.data.step : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Deletes all but the newest `retain` (default `keep`), the best, and the newest verified
   * checkpoint. Also removes stale .tmp-* dirs.
   */
  async prune(retain = this.keep): Promise<void> {
    const { entries } = await this.scan();
    const keepSteps = new Set(retain > 0 ? entries.slice(-retain).map((e) => e.info.step) : []);
    const best = await this.bestStep();
    if (best !== undefined) keepSteps.add(best);
    const doomed = entries.filter((e) => !keepSteps.has(e.info.step));
    if (doomed.length > 0) {
      const newestVerified = await this.newestVerified(entries);
      for (const { info } of doomed) if (info.step !== newestVerified) await this.removeDir(info.dir);
    }
    await this.removeStaleTemps();
    await fsyncDir(this.dir);
  }

  /** Step of the newest checkpoint whose files match its manifest, if any. */
  private async newestVerified(entries: Entry[]): Promise<number | undefined> {
    for (const entry of [...entries].reverse()) {
      if (this.verified.has(entry.info.step)) return entry.info.step;
      try {
        await readVerified(entry);
        return entry.info.step;
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
      }
    }
    return undefined;
  }

  /** Checkpoints with a valid manifest (of any job), ascending step. Files are not verified here. */
  async list(): Promise<CheckpointInfo[]> {
    return (await this.scan()).entries.map((e) => e.info);
  }

  /** Newest checkpoint whose files match their checksums and whose jobHash matches; each corrupt/truncated/mismatched one is skipped with a warning naming the file (collect warnings and return them so the coordinator can record events). */
  async loadLatestValid(): Promise<{ info: CheckpointInfo; state: Uint8Array; warnings: string[] } | undefined> {
    const { entries, problems } = await this.scan();
    const warnings: string[] = [];
    let chosen: { info: CheckpointInfo; state: Uint8Array } | undefined;
    for (const entry of [...entries].reverse()) {
      this.checkJobHash(entry.info);
      try {
        chosen = { info: entry.info, state: await readVerified(entry) };
        this.verified.add(entry.info.step);
        break;
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        warnings.push(`${error.message}; skipped`);
      }
    }
    const newer = problems
      .filter((p) => chosen === undefined || p.step > chosen.info.step)
      .map((p) => `${p.message}; skipped`);
    const all = [...newer, ...warnings];
    for (const warning of all) this.logger?.warn({ component: 'checkpoint-store' }, warning);
    return chosen === undefined ? undefined : { ...chosen, warnings: all };
  }

  /** One checkpoint, verified; throws CheckpointError naming the file on any problem. */
  async load(step: number): Promise<{ info: CheckpointInfo; state: Uint8Array }> {
    const dir = path.join(this.dir, stepDirName(step));
    const manifest = await this.readManifest(dir, step);
    const entry = { info: infoFrom(dir, manifest), manifest };
    this.checkJobHash(entry.info);
    return { info: entry.info, state: await readVerified(entry) };
  }

  private manifestFor(input: CheckpointSaveInput): Manifest {
    stepDirName(input.step);
    const manifest: Manifest = {
      format: 'ringtrain-checkpoint',
      version: 1,
      step: input.step,
      epoch: input.epoch,
      batchInEpoch: input.batchInEpoch,
      jobHash: this.jobHash,
      createdAt: new Date().toISOString(),
      files: { [STATE_FILE]: { bytes: input.state.byteLength, sha256: sha256Hex(input.state) } },
    };
    if (input.metrics !== undefined)
      manifest.metrics = Object.fromEntries(Object.entries(input.metrics).filter(([, v]) => Number.isFinite(v)));
    if (input.extra !== undefined) manifest.extra = input.extra;
    return manifestSchema.parse(manifest);
  }

  /** rename() cannot replace a non-empty directory: an existing same-step one is set aside first. */
  private async moveIntoPlace(temp: string, final: string): Promise<void> {
    const aside = this.tempPath(`replaced-${path.basename(final)}`);
    let hadOld = true;
    try {
      await fsp.rename(final, aside);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      hadOld = false;
    }
    await fsp.rename(temp, final);
    await fsyncDir(this.dir);
    if (hadOld) await fsp.rm(aside, { recursive: true, force: true });
  }

  private async removeDir(dir: string): Promise<void> {
    const doomed = this.tempPath(`delete-${path.basename(dir)}`);
    await fsp.rename(dir, doomed);
    await fsp.rm(doomed, { recursive: true, force: true });
  }

  /** Leftovers of crashed writers: any .tmp-* dir not being written by a live process. */
  private async removeStaleTemps(): Promise<void> {
    for (const name of await readdirOrEmpty(this.dir)) {
      const match = TEMP_DIR.exec(name);
      if (match === null) continue;
      const full = path.join(this.dir, name);
      const pid = Number(match[1]);
      if (this.inFlight.has(full) || (pid !== process.pid && isProcessAlive(pid))) continue;
      await fsp.rm(full, { recursive: true, force: true });
    }
  }

  /** Pruning around a save is housekeeping: a failure is logged, never fatal to training. */
  private async pruneQuietly(retain: number): Promise<void> {
    try {
      await this.prune(retain);
    } catch (error) {
      this.logger?.warn({ err: error, dir: this.dir }, 'could not prune old checkpoints');
    }
  }

  private async scan(): Promise<{ entries: Entry[]; problems: Array<{ step: number; message: string }> }> {
    const entries: Entry[] = [];
    const problems: Array<{ step: number; message: string }> = [];
    for (const name of (await readdirOrEmpty(this.dir)).sort()) {
      const match = STEP_DIR.exec(name);
      if (match === null) continue;
      const dir = path.join(this.dir, name);
      const step = Number(match[1]);
      try {
        const manifest = await this.readManifest(dir, step);
        entries.push({ info: infoFrom(dir, manifest), manifest });
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        problems.push({ step, message: error.message });
      }
    }
    return { entries, problems };
  }

  private async readManifest(dir: string, step: number): Promise<Manifest> {
    const file = path.join(dir, MANIFEST_FILE);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (cause) {
      throw new CheckpointError(
        file,
        isNotFound(cause)
          ? 'missing (not a complete checkpoint)'
          : `unreadable (${errnoCode(cause) ?? describeError(cause)})`,
        { cause },
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new CheckpointError(file, 'not valid JSON', { cause });
    }
    const result = manifestSchema.safeParse(parsed);
    if (!result.success)
      throw new CheckpointError(
        file,
        `invalid manifest (${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`,
      );
    if (result.data.step !== step)
      throw new CheckpointError(file, `says step ${result.data.step} but its directory is for step ${step}`);
    if (result.data.files[STATE_FILE] === undefined) throw new CheckpointError(file, `lists no ${STATE_FILE}`);
    return result.data;
  }

  private checkJobHash(info: CheckpointInfo): void {
    if (info.jobHash === this.jobHash) return;
    throw new CheckpointError(
      info.dir,
      `was written by a different job (hash ${info.jobHash}, this job ${this.jobHash}); resume with the job it was written by, or start a new run`,
    );
  }

  private tempPath(label: string): string {
    return path.join(this.dir, `.tmp-${label}-${process.pid}-${randomBytes(4).toString('hex')}`);
  }
}

/** `step-000000123`; steps must fit the nine digits so names sort like numbers. */
export function stepDirName(step: number): string {
  if (!Number.isInteger(step) || step < 0 || step > 999_999_999)
    throw new RangeError(`checkpoint step must be an integer in [0, 999999999], got ${step}`);
  return `step-${String(step).padStart(9, '0')}`;
}

/** Reads state.bin and checks it against the manifest; CheckpointError names the bad file. */
async function readVerified(entry: Entry): Promise<Uint8Array> {
  for (const [name, expected] of Object.entries(entry.manifest.files)) {
    if (name === STATE_FILE) continue;
    await readChecked(path.join(entry.info.dir, name), expected);
  }
  const expected = entry.manifest.files[STATE_FILE];
  if (expected === undefined) throw new CheckpointError(entry.info.dir, `manifest lists no ${STATE_FILE}`);
  return readChecked(path.join(entry.info.dir, STATE_FILE), expected);
}

async function readChecked(file: string, expected: { bytes: number; sha256: string }): Promise<Uint8Array> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (cause) {
    throw new CheckpointError(file, `unreadable (${errnoCode(cause) ?? describeError(cause)})`, {
      cause,
    });
  }
  if (data.byteLength !== expected.bytes)
    throw new CheckpointError(file, `truncated or resized: ${data.byteLength} bytes, manifest says ${expected.bytes}`);
  const actual = sha256Hex(data);
  if (actual !== expected.sha256)
    throw new CheckpointError(
      file,
      `checksum mismatch (sha256 ${actual.slice(0, 12)}…, manifest says ${expected.sha256.slice(0, 12)}…)`,
    );
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function infoFrom(dir: string, m: Manifest): CheckpointInfo {
  const info: CheckpointInfo = {
    dir,
    step: m.step,
    epoch: m.epoch,
    batchInEpoch: m.batchInEpoch,
    jobHash: m.jobHash,
    createdAt: m.createdAt,
  };
  if (m.metrics !== undefined) info.metrics = m.metrics;
  if (m.extra !== undefined) info.extra = m.extra;
  return info;
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}
