// The run directory: where one training run leaves everything durable.
//
//   <root>/<YYYYMMDD-HHMMSS>-<name>/   (UTC timestamp; <root>/latest -> the newest, relative symlink)
//     job.yaml  summary.json  metrics.jsonl  checkpoints/step-000000123/  model/
//
// Invariants: job.yaml and summary.json are replaced atomically; model/ is swapped as a whole
// directory; metrics.jsonl only ever has a torn *last* line (a crash mid-append), which is cut
// off when the run is reopened and skipped by readers.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  fsyncDir,
  fsyncDirSync,
  replaceDirAtomic,
  restoreReplacedDir,
  writeFileAtomic,
} from '../../shared/atomic-file.js';
import {
  isAlreadyExists,
  isNotFound,
  JobConfigError,
  RingtrainError,
  rethrowStorageFull,
} from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';

/** Tries per second-resolution name before giving up on finding a free `-<n>` suffix. */
const MAX_NAME_ATTEMPTS = 1000;

export interface RunDirectoryCreateOptions {
  /** Folder holding all runs and the `latest` link. @default "runs" */
  root?: string;
  /** `--out DIR`: use this folder as is. `latest` is then only updated when `root` is also given. */
  explicitDir?: string;
  /** The job's name, the suffix of the generated folder name. */
  name: string;
  /** Clock for the folder name. @default new Date() */
  now?: Date;
  /** Receives a warning when `latest` cannot be updated (never fatal). */
  logger?: Logger;
}

export class RunDirectory {
  readonly path: string;
  readonly checkpointsDir: string;
  readonly modelDir: string;
  /** model-best/: the best checkpoint's model, beside model/ (when model/ is not the best already). */
  readonly bestModelDir: string;
  readonly metricsFile: string;
  private readonly metrics: MetricsLog;
  /** Who else reads each record as it is appended (the HTTP monitor); see onRecord. */
  private readonly recordListeners: Array<(record: Readonly<Record<string, unknown>>) => void> = [];

  private constructor(dir: string) {
    this.path = dir;
    this.checkpointsDir = path.join(dir, 'checkpoints');
    this.modelDir = path.join(dir, 'model');
    this.bestModelDir = path.join(dir, 'model-best');
    this.metricsFile = path.join(dir, 'metrics.jsonl');
    this.metrics = new MetricsLog(this.metricsFile, dir);
  }

  /** Creates runs/<YYYYMMDD-HHMMSS>-<name> under `root` (default "runs"; a unique suffix if it exists) or uses `explicitDir` as is (`--out DIR`), and points <root>/latest at it. */
  static async create(options: RunDirectoryCreateOptions): Promise<RunDirectory> {
    const root = path.resolve(options.root ?? 'runs');
    let dir: string;
    if (options.explicitDir !== undefined) {
      dir = path.resolve(options.explicitDir);
      await claimExplicitDir(dir);
    } else {
      await fsp.mkdir(root, { recursive: true });
      dir = await claimFreshDir(root, `${timestampUtc(options.now ?? new Date())}-${options.name}`);
    }
    await fsp.mkdir(path.join(dir, 'checkpoints'), { recursive: true });
    await fsyncDir(path.dirname(dir));
    if (options.explicitDir === undefined || options.root !== undefined) {
      await pointLatest(root, dir, options.logger);
    }
    return new RunDirectory(dir);
  }

  /** Opens an existing run directory for `--resume DIR` (accepts the run dir itself or a `latest` symlink); errors clearly if it has no job.yaml. */
  static async open(dir: string): Promise<RunDirectory> {
    let real: string;
    try {
      real = await fsp.realpath(dir);
    } catch (cause) {
      throw new JobConfigError(`--resume ${dir}`, ['no such run directory'], { cause });
    }
    if (!fs.existsSync(path.join(real, 'job.yaml'))) {
      throw new JobConfigError(`--resume ${dir}`, [
        'not a run directory (no job.yaml); pass runs/<timestamp>-<name> or runs/latest',
      ]);
    }
    await restoreReplacedDir(path.join(real, 'model'));
    await restoreReplacedDir(path.join(real, 'model-best'));
    await fsp.mkdir(path.join(real, 'checkpoints'), { recursive: true });
    return new RunDirectory(real);
  }

  /** Replaces job.yaml atomically. */
  async writeJob(yamlText: string): Promise<void> {
    const file = path.join(this.path, 'job.yaml');
    await writeFileAtomic(file, yamlText).catch((error: unknown) => rethrowStorageFull(error, file));
  }

  async readJobText(): Promise<string> {
    return fsp.readFile(path.join(this.path, 'job.yaml'), 'utf8');
  }

  /**
   * Appends one JSON line to metrics.jsonl. Every line reaches the OS at once (a SIGKILL loses
   * nothing already appended); lines with `type: "step"` are fsynced in batches, all others
   * (validation, events) at once. close() flushes the rest.
   */
  appendMetrics(record: Record<string, unknown>): void {
    this.metrics.append(record, record['type'] !== 'step');
    for (const listener of this.recordListeners) listener(record);
  }

  /**
   * Calls `listener` with every record appended to metrics.jsonl from now on (steps, validations,
   * events), after it reached the file: one subscription point for live views of the run, which
   * so read exactly what metrics.jsonl holds. Returns the unsubscribe function.
   */
  onRecord(listener: (record: Readonly<Record<string, unknown>>) => void): () => void {
    this.recordListeners.push(listener);
    return () => {
      const at = this.recordListeners.indexOf(listener);
      if (at >= 0) this.recordListeners.splice(at, 1);
    };
  }

  /** Replaces summary.json atomically. */
  async writeSummary(summary: Record<string, unknown>): Promise<void> {
    const file = path.join(this.path, 'summary.json');
    await writeFileAtomic(file, `${JSON.stringify(summary, null, 2)}\n`).catch((error: unknown) =>
      rethrowStorageFull(error, file, this.path),
    );
  }

  /** Writes model.json + weights.bin into `dir` (default model/) atomically as a directory: write into <dir>.tmp-*, fsync files, rename into place (replace an old one). */
  async writeModel(files: Record<string, Uint8Array | string>, dir = this.modelDir): Promise<void> {
    await replaceDirAtomic(dir, files).catch((error: unknown) => rethrowStorageFull(error, dir, this.path));
  }

  /** Flushes and closes metrics.jsonl and fsyncs the run folder. Idempotent. */
  async close(): Promise<void> {
    this.metrics.close();
    await fsyncDir(this.path);
  }
}

/** YYYYMMDD-HHMMSS in UTC, so names sort by time whatever the machine's zone. */
export function timestampUtc(now: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const date = `${now.getUTCFullYear()}${two(now.getUTCMonth() + 1)}${two(now.getUTCDate())}`;
  return `${date}-${two(now.getUTCHours())}${two(now.getUTCMinutes())}${two(now.getUTCSeconds())}`;
}

/** mkdir without `recursive` is the claim: EEXIST means another run took the name first. */
async function claimFreshDir(root: string, base: string): Promise<string> {
  for (let attempt = 1; attempt <= MAX_NAME_ATTEMPTS; attempt++) {
    const dir = path.join(root, attempt === 1 ? base : `${base}-${attempt}`);
    try {
      await fsp.mkdir(dir);
      return dir;
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
    }
  }
  throw new JobConfigError(root, [`no free run directory name for ${base} after ${MAX_NAME_ATTEMPTS} tries`]);
}

/** `--out DIR` may exist (an empty volume, say) but must not already hold a run. */
async function claimExplicitDir(dir: string): Promise<void> {
  if (fs.existsSync(path.join(dir, 'job.yaml'))) {
    throw new JobConfigError(`--out ${dir}`, [
      'already holds a run (job.yaml); use --resume to continue it, or choose another --out',
    ]);
  }
  await fsp.mkdir(dir, { recursive: true });
}

/** Makes <root>/latest a relative symlink to `dir`: a temp link renamed over the old one. */
async function pointLatest(root: string, dir: string, logger: Logger | undefined): Promise<void> {
  const latest = path.join(root, 'latest');
  const temp = path.join(root, `.latest.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await fsp.mkdir(root, { recursive: true });
    await fsp.symlink(path.relative(root, dir) || '.', temp, 'dir');
    await fsp.rename(temp, latest);
    await fsyncDir(root);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    logger?.warn({ err: error, latest }, 'could not update the latest-run link');
  }
}

/** Step lines written between two fsyncs of metrics.jsonl. */
const STEP_LINES_PER_FSYNC = 100;

/**
 * Append-only JSON-lines file; opened lazily so a run without metrics has no file. A line that
 * cannot be written whole (disk full, quota, file-size limit) is cut off again, so the file
 * never ends in a torn line while the run goes on, and the failure is a StorageFullError.
 */
class MetricsLog {
  private fd: number | undefined;
  /** Bytes in the file up to the end of the last whole line. */
  private size = 0;
  private unsyncedLines = 0;
  private closed = false;

  constructor(
    private readonly file: string,
    private readonly runDir: string,
  ) {}

  append(record: Record<string, unknown>, durable: boolean): void {
    if (this.closed) throw new RingtrainError(`${this.file}: metrics log already closed`);
    const line = Buffer.from(`${JSON.stringify(record)}\n`, 'utf8');
    try {
      if (this.fd === undefined) {
        this.fd = openForAppend(this.file);
        this.size = fs.fstatSync(this.fd).size;
      }
      writeAll(this.fd, line);
    } catch (error) {
      if (this.fd !== undefined) fs.ftruncateSync(this.fd, this.size); // needs no free space
      rethrowStorageFull(error, this.file, this.runDir);
    }
    this.size += line.length;
    this.unsyncedLines++;
    if (durable || this.unsyncedLines >= STEP_LINES_PER_FSYNC) this.sync();
  }

  close(): void {
    if (this.fd !== undefined) {
      const fd = this.fd;
      this.fd = undefined;
      try {
        this.sync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    this.closed = true;
  }

  private sync(fd = this.fd): void {
    if (fd === undefined || this.unsyncedLines === 0) return;
    try {
      fs.fsyncSync(fd);
    } catch (error) {
      rethrowStorageFull(error, this.file, this.runDir);
    }
    this.unsyncedLines = 0;
  }
}

/** Opens for appending, first cutting a torn last line (crash mid-append) so new lines start clean. */
function openForAppend(file: string): number {
  const existed = fs.existsSync(file);
  const fd = fs.openSync(file, 'a+');
  const size = fs.fstatSync(fd).size;
  if (size > 0) {
    const keep = lastNewlineEnd(fd, size);
    if (keep < size) {
      fs.ftruncateSync(fd, keep);
      fs.fsyncSync(fd);
    }
  }
  if (!existed) fsyncDirSync(path.dirname(file));
  return fd;
}

/** Byte length of the file up to and including its last '\n' (0 if none). */
function lastNewlineEnd(fd: number, size: number): number {
  const chunk = Buffer.alloc(Math.min(size, 64 * 1024));
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - chunk.length);
    const read = fs.readSync(fd, chunk, 0, end - start, start);
    const at = chunk.subarray(0, read).lastIndexOf(0x0a);
    if (at >= 0) return start + at + 1;
    end = start;
  }
  return 0;
}

function writeAll(fd: number, bytes: Buffer): void {
  for (let offset = 0; offset < bytes.length;) {
    const written = fs.writeSync(fd, bytes, offset);
    if (written <= 0) throw new RingtrainError('metrics.jsonl: write made no progress');
    offset += written;
  }
}

/** Reads metrics.jsonl (missing file: no records). A torn final line is skipped; a bad middle line is an error. */
export function readMetrics(file: string): Array<Record<string, unknown>> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const lines = text.split('\n');
  const records: Array<Record<string, unknown>> = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const record = parseRecord(line);
    if (record !== undefined) records.push(record);
    else if (i < lines.length - 1) throw new RingtrainError(`${file}:${i + 1}: not a JSON object line`);
  });
  return records;
}

function parseRecord(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
