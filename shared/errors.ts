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
    options?: { cause?: unknown; hint?: string },
  ) {
    super(
      `cannot reach coordinator at ${address} after ${attempts} attempts; check --coordinator / RINGTRAIN_COORDINATOR and that the coordinator is running${options?.hint !== undefined ? `; ${options.hint}` : ''}`,
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

/**
 * The coordinator refused this worker's job token (UNAUTHENTICATED). Final: the same token
 * would be refused again. Exit code 6, as for any refusal.
 */
export class UnauthenticatedError extends RingtrainError {
  override readonly exitCode = 6;
  constructor(
    readonly address: string,
    presentedToken: boolean,
    options?: { cause?: unknown },
  ) {
    super(
      `coordinator at ${address} refused this worker: ${presentedToken ? 'wrong job token' : 'it asks for a job token and this worker has none'} (UNAUTHENTICATED); give the job's token with --token-file or RINGTRAIN_TOKEN`,
      options,
    );
  }
}

/** A listening port is taken or cannot be bound. */
export class PortInUseError extends RingtrainError {
  override readonly exitCode = 7;
  constructor(
    readonly address: string,
    options?: { cause?: unknown; flag?: string },
  ) {
    super(`cannot listen on ${address}: address already in use; pick another ${options?.flag ?? '--port'}`, options);
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

/** Who a worker is, for messages: its rank once it has one, always its host and pid. */
export interface WorkerIdentity {
  /** -1 before the worker is ranked. */
  rank: number;
  host: string;
  pid: number;
  /** Its ring data address (host:port), which tells apart workers not yet ranked. */
  dataAddress?: string;
}

/**
 * A worker named for a person: `worker rank 1 (host-b, pid 4242)`, or, before it has a rank,
 * `worker on host-b (pid 4242, data address host-b:36111)`. Never "rank -1".
 */
export function describeWorker(worker: WorkerIdentity | number): string {
  if (typeof worker === 'number') return worker >= 0 ? `worker rank ${worker}` : 'a worker';
  if (worker.rank >= 0) return `worker rank ${worker.rank} (${worker.host}, pid ${worker.pid})`;
  const address =
    worker.dataAddress === undefined || worker.dataAddress === '' ? '' : `, data address ${worker.dataAddress}`;
  return `worker on ${worker.host} (pid ${worker.pid}${address})`;
}

/** A worker failed or left during training. */
export class WorkerFailedError extends RingtrainError {
  override readonly exitCode: number = 8;
  /** The worker's rank; -1 before it had one. */
  readonly rank: number;
  constructor(
    readonly worker: WorkerIdentity | number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${describeWorker(worker)} failed: ${reason}`, options);
    this.rank = typeof worker === 'number' ? worker : worker.rank;
  }
}

/**
 * Too few workers to go on: fewer joined than needed, or too many failed to continue. Not one
 * worker's failure, so the message names the count, not a rank.
 */
export class NotEnoughWorkersError extends WorkerFailedError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(-1, reason, options);
    this.message = `not enough workers: ${reason}`;
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

/** An exported model folder (or a run's model/) is missing, unreadable or lacks ringtrain's metadata. */
export class ModelLoadError extends RingtrainError {
  override readonly exitCode = 10;
  constructor(
    readonly path: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`model ${path}: ${reason}`, options);
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

/** A callback given to train() threw (or rejected); `cause` is what it threw. Exit code as for a hook. */
export class CallbackError extends RingtrainError {
  override readonly exitCode = 11;
  constructor(
    readonly callback: string,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? options.cause.message : String(options?.cause);
    super(`callback ${callback} threw: ${why}`, options);
  }
}

/** Training produced non-finite values too many times, or replicas diverged. */
export class TrainingDivergedError extends RingtrainError {
  override readonly exitCode = 12;
}

/**
 * The model has a layer whose randomness ringtrain cannot seed (GaussianNoise, a recurrent
 * layer's dropout, ...), so 1 and N workers would not train the same: a configuration error.
 */
export class UnseededLayerError extends RingtrainError {
  override readonly exitCode = 2;
  constructor(
    readonly layer: string,
    readonly what: string,
    options?: { cause?: unknown },
  ) {
    super(
      `model: layer "${layer}" is ${what}, whose randomness ringtrain cannot seed, so training would differ with the number of workers; remove it or use a Dropout layer`,
      options,
    );
  }
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
  const code = errnoCode(error);
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

/** Exit code of a process stopped by `signal`, as shells report it (128 + signal number). */
export function signalExitCode(signal: StopSignal): number {
  return signal === 'SIGINT' ? 130 : signal === 'SIGPIPE' ? 141 : 143;
}

/**
 * What stops a run: a process signal, the abort signal given to train() (`'abort'`), or stdout
 * closed by its reader (`'SIGPIPE'`, e.g. `ringtrain train --json | head`).
 */
export type StopSignal = 'SIGINT' | 'SIGTERM' | 'SIGPIPE' | 'abort';

function stopCauseText(signal: StopSignal): string {
  if (signal === 'SIGPIPE') return 'a closed stdout (SIGPIPE)';
  return signal === 'abort' ? 'the abort signal' : signal;
}

/** SIGTERM/SIGINT (or train()'s abort signal) before any step ran (e.g. while waiting for workers): nothing to checkpoint. */
export class StoppedBySignalError extends RingtrainError {
  override readonly exitCode: number;
  constructor(readonly signal: StopSignal) {
    super(
      `stopped by ${stopCauseText(signal)} before training started; nothing was trained, so nothing was checkpointed`,
    );
    this.exitCode = signalExitCode(signal);
  }
}

/** SIGTERM/SIGINT (or train()'s abort signal): the run checkpointed at a step boundary and stopped; `--resume` continues it. */
export class PreemptedError extends RingtrainError {
  override readonly exitCode: number;
  constructor(
    readonly step: number,
    readonly runDir: string,
    readonly signal: StopSignal = 'SIGTERM',
  ) {
    super(
      `stopped by ${stopCauseText(signal)} after step ${step}; checkpointed, continue with: ringtrain train --resume ${runDir}`,
    );
    this.exitCode = signalExitCode(signal);
  }
}

/** A command-line flag or argument is malformed or impossible here (exit 2, like a bad job file). */
export class FlagError extends RingtrainError {
  override readonly exitCode = 2;
  constructor(
    readonly flag: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${flag}: ${reason}`, options);
  }
}

/** An input of `ringtrain report` is missing or is neither a run directory nor a bench JSON file. */
export class ReportInputError extends RingtrainError {
  override readonly exitCode = 2;
  constructor(
    readonly input: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`report ${input}: ${reason}`, options);
  }
}

/** An imported optimizer state (checkpoint or peer) does not fit this job's optimizer. */
export class OptimizerStateError extends RingtrainError {
  override readonly exitCode = 10;
  constructor(
    readonly optimizer: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`optimizer state does not fit this job's "${optimizer}" optimizer: ${reason}`, options);
  }
}

/** One line for a user: the message of a RingtrainError, or the message of anything else. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

// ---------------------------------------------------------------- errno and message parsing
// Every test of an error's code or wording lives here, so that the rest of the code asks a
// question ("is the address in use?") rather than parsing Node's or gRPC's errors itself.

/** The errno-style code of a Node error (`ENOENT`, `EADDRINUSE`, `ERR_MODULE_NOT_FOUND`), if any. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** True when `error` is a missing file or directory. */
export function isNotFound(error: unknown): boolean {
  return errnoCode(error) === 'ENOENT';
}

/** True when `error` says the reader of a pipe has gone (EPIPE: `ringtrain train --json | head`). */
export function isBrokenPipe(error: unknown): boolean {
  return errnoCode(error) === 'EPIPE';
}

/** True when `error` says a path exists already (a lost race for a name). */
export function isAlreadyExists(error: unknown): boolean {
  return errnoCode(error) === 'EEXIST';
}

/** The peer reset the connection (ECONNRESET): it closed without a word, as a TCP probe does. */
export function isConnectionReset(error: unknown): boolean {
  return errnoCode(error) === 'ECONNRESET';
}

/** True when `error` is a refused permission (EPERM), e.g. a rename onto a busy file on some filesystems. */
export function isPermissionRefused(error: unknown): boolean {
  return errnoCode(error) === 'EPERM';
}

/** True when fsync of a directory is refused: some filesystems do not support it, which is harmless. */
export function isDirectorySyncRefused(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'EINVAL' || code === 'EPERM' || code === 'EISDIR' || code === 'EBADF';
}

/**
 * True when binding failed because the address is taken. Node sockets say EADDRINUSE; grpc-js
 * reports it only in its message ("No address added out of total 1 resolved").
 */
export function isAddressInUse(error: unknown): boolean {
  if (errnoCode(error) === 'EADDRINUSE') return true;
  return error instanceof Error && /address already in use|EADDRINUSE|No address added/i.test(error.message);
}

/** True when an import of `specifier` failed because the package is not installed. */
export function isModuleNotFound(error: unknown, specifier: string): boolean {
  if (!(error instanceof Error)) return false;
  const code = errnoCode(error);
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return error.message.includes(specifier);
  // Vitest/Vite resolve bare specifiers themselves and word the same failure differently.
  return (
    /cannot find (package|module)|failed to (load|resolve)/i.test(error.message) && error.message.includes(specifier)
  );
}

/** Why a file could not be read, in words: "file not found" or "cannot read file (EACCES)". */
export function describeReadFailure(error: unknown): string {
  if (isNotFound(error)) return 'file not found';
  return `cannot read file (${errnoCode(error) ?? describeError(error)})`;
}

/**
 * The job's loss, model output and metrics disagree (crossentropy on an output without
 * softmax/sigmoid and without fromLogits, accuracy on a regression, ...). `key` is the job key
 * to change. A configuration error: found before any worker trains.
 */
export class OutputMismatchError extends RingtrainError {
  override readonly exitCode = 2;
  constructor(
    readonly key: 'loss' | 'metrics',
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${key}: ${reason}`, options);
  }
}
