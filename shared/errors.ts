// Named errors for everything a user can get wrong or the cluster can break.
// Each carries the input it concerns; the CLI prints `message` as one line (no stack) and
// exits with `exitCode`. gRPC status conversion happens only at service boundaries.

export class RingtrainError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The job file (or a CLI override) is unreadable or invalid. */
export class JobConfigError extends RingtrainError {
  override readonly exitCode = 2;
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`${source}: ${problems.join('; ')}`, options);
  }
}

/** A dataset file is missing or malformed. `line` is 1-based where known. */
export class DatasetError extends RingtrainError {
  override readonly exitCode = 3;
  constructor(
    readonly file: string,
    readonly reason: string,
    readonly line?: number,
    options?: { cause?: unknown },
  ) {
    super(`${file}${line === undefined ? '' : `:${line}`}: ${reason}`, options);
  }
}

/** The requested TensorFlow.js backend cannot be loaded here. */
export class BackendUnavailableError extends RingtrainError {
  override readonly exitCode = 4;
  constructor(
    readonly backend: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`backend "${backend}" is unavailable: ${reason}`, options);
  }
}

/** The coordinator could not be reached after all retries. */
export class CoordinatorUnreachableError extends RingtrainError {
  override readonly exitCode = 5;
  constructor(
    readonly address: string,
    readonly attempts: number,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot reach coordinator at ${address} after ${attempts} attempts; check --coordinator / RINGTRAIN_COORDINATOR and that the coordinator is running`,
      options,
    );
  }
}

/** The coordinator took this worker's Hello but sent no Welcome (nor a Reject) in time. */
export class WelcomeTimeoutError extends RingtrainError {
  override readonly exitCode = 5;
  constructor(
    readonly address: string,
    readonly timeoutMs: number,
  ) {
    super(
      `coordinator at ${address} took this worker's hello but sent no welcome within ${Math.round(timeoutMs / 1000)} s; check the coordinator's log (is it waiting for other workers, or stuck?)`,
    );
  }
}

/** The coordinator refused this worker (job hash, generation, world full, ...). */
export class JoinRejectedError extends RingtrainError {
  override readonly exitCode = 6;
  constructor(
    readonly code: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`coordinator rejected this worker (${code}): ${reason}`, options);
  }
}

/** A listening port is taken or cannot be bound. */
export class PortInUseError extends RingtrainError {
  override readonly exitCode = 7;
  constructor(
    readonly address: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot listen on ${address}: address already in use; pick another --port`, options);
  }
}

/**
 * The model and batch need more memory than the backend can ever give one worker (the wasm
 * heap's fixed 4 GiB): refused before any worker starts. A configuration error, so exit code 2.
 */
export class ModelTooLargeError extends RingtrainError {
  override readonly exitCode = 2;
  constructor(
    readonly estimatedBytes: number,
    readonly limitBytes: number,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(detail, options);
  }
}

/**
 * A worker's backend ran out of memory during a step (on wasm: "memory access out of bounds" or a
 * RangeError when its heap cannot grow). The worker reports it and stops: the coordinator's
 * exit code for a failed worker, 8.
 */
export class OutOfMemoryError extends RingtrainError {
  override readonly exitCode = 8;
}

/** WebAssembly.RuntimeError (a trap), which this project's TypeScript libs do not declare. */
const WASM_RUNTIME_ERROR = (globalThis as unknown as { WebAssembly: { RuntimeError: new () => Error } }).WebAssembly
  .RuntimeError;

/**
 * `error` as an OutOfMemoryError when it is the backend running out of memory during `doing`
 * ("step 0"), else undefined. On wasm every WebAssembly.RuntimeError counts: an allocation the
 * 4 GiB heap cannot hold surfaces as "memory access out of bounds" (or, for one tensor over
 * 4 GiB, whose size wraps in 32 bits, as "table index is out of bounds"), never as a clear error.
 */
export function outOfMemoryFrom(error: unknown, doing: string, backend: string): OutOfMemoryError | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const wasmTrap = error instanceof WASM_RUNTIME_ERROR && backend === 'wasm';
  const allocation =
    error instanceof RangeError && /allocation failed|invalid array length|out of memory|memory access/i.test(message);
  if (!wasmTrap && !allocation && !/out of memory|\bOOM\b/i.test(message)) return undefined;
  const limit = backend === 'wasm' ? ` (the wasm heap is limited to 4 GiB)` : '';
  return new OutOfMemoryError(
    `out of memory in ${doing} on the ${backend} backend${limit}: ${message}; use a smaller model or training.batchSize, more workers, or backend: tensorflow`,
    { cause: error },
  );
}

/** A worker failed or left during training. */
export class WorkerFailedError extends RingtrainError {
  override readonly exitCode = 8;
  constructor(
    readonly rank: number,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`worker rank ${rank} failed: ${reason}`, options);
  }
}

/** A collective saw inconsistent input (lengths, generations, frames) across ranks. */
export class CollectiveError extends RingtrainError {
  override readonly exitCode = 9;
}

/** A checkpoint is unreadable, corrupt or belongs to a different job. */
export class CheckpointError extends RingtrainError {
  override readonly exitCode = 10;
  constructor(
    readonly path: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`checkpoint ${path}: ${reason}`, options);
  }
}

/** A user hook threw. */
export class HookError extends RingtrainError {
  override readonly exitCode = 11;
  constructor(
    readonly hook: string,
    readonly module: string,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? options.cause.message : String(options?.cause);
    super(`hook ${hook} in ${module} threw: ${why}`, options);
  }
}

/** Training produced non-finite values too many times, or replicas diverged. */
export class TrainingDivergedError extends RingtrainError {
  override readonly exitCode = 12;
}

/** errno codes that mean "no room to write": a full disk, a quota, a file-size limit (RLIMIT_FSIZE). */
const STORAGE_FULL_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** The run directory's disk is full, or a quota or file-size limit was reached, while writing `file`. */
export class StorageFullError extends RingtrainError {
  override readonly exitCode = 13;
  constructor(
    readonly file: string,
    readonly code: string,
    readonly runDir: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      `cannot write ${file}: no space left (${code}: the disk is full, or a quota or file-size limit was reached); free some space${runDir === undefined ? '' : `, then continue with: ringtrain train --resume ${runDir}`}`,
      options,
    );
  }
}

/** The errno code when `error` means "no room to write", else undefined. */
export function storageFullCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && STORAGE_FULL_CODES.has(code) ? code : undefined;
}

/** Rethrows a "no room to write" failure of `file` as StorageFullError, anything else as is. */
export function rethrowStorageFull(error: unknown, file: string, runDir?: string): never {
  if (error instanceof StorageFullError) throw error;
  const code = storageFullCode(error);
  if (code !== undefined) throw new StorageFullError(file, code, runDir, { cause: error });
  throw error;
}

/** The error a user sees for `error`: a write that found no room anywhere becomes StorageFullError. */
export function userFacingError(error: unknown): unknown {
  if (error instanceof RingtrainError) return error;
  const code = storageFullCode(error);
  if (code === undefined) return error;
  const file = (error as NodeJS.ErrnoException).path ?? 'a file';
  return new StorageFullError(file, code, undefined, { cause: error });
}

/** SIGTERM/SIGINT: the run checkpointed at a step boundary and stopped; `--resume` continues it. */
export class PreemptedError extends RingtrainError {
  override readonly exitCode = 143;
  constructor(
    readonly step: number,
    readonly runDir: string,
  ) {
    super(`stopped by a signal after step ${step}; checkpointed, continue with: ringtrain train --resume ${runDir}`);
  }
}

/** One line for a user: the message of a RingtrainError, or the message of anything else. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
