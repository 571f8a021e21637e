// Chooses and initialises the TensorFlow.js backend for this process: native TensorFlow through
// the optional @tensorflow/tfjs-node(-gpu) packages, else WebAssembly, else pure JS.
//
// Why the native packages work with our `@tensorflow/tfjs` import: tfjs-core keeps its engine
// (`globalThis._tfengine`) and its kernel registry on the global object, so when
// @tensorflow/tfjs-node is imported it registers backend "tensorflow" and its kernels into the
// same engine our umbrella import uses, even if npm installed a second copy of tfjs-core.
// Only matching versions are supported by TensorFlow.js, so a mismatch is logged.
import * as tf from '@tensorflow/tfjs';
import { BackendUnavailableError, isModuleNotFound } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { registerTileGradient } from './tile-gradient.js';
import { registerWasmKernels, type WasmKernelOptions } from './wasm-kernels.js';

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** The active tfjs backend: 'tensorflow' | 'wasm' | 'cpu'. */
  name: string;
  /** True only when TensorFlow itself reports that it runs ops on a GPU. */
  gpu: boolean;
  /** Human-readable origin, e.g. "@tensorflow/tfjs-node-gpu 4.22.0 (GPU)". */
  detail: string;
}

const NODE_GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';
const NODE_CPU_PACKAGE = '@tensorflow/tfjs-node';
const WASM_PACKAGE = '@tensorflow/tfjs-backend-wasm';

/** Outcome of importing an optional package: loaded, absent, or present but broken. */
type ImportOutcome =
  { loaded: true; module: Record<string, unknown> } | { loaded: false; missing: boolean; reason: string };

/**
 * auto: tfjs-node-gpu if installed and a GPU is visible (CUDA_VISIBLE_DEVICES not '' / '-1'),
 * then tfjs-node, then wasm, then cpu. An explicit choice that cannot load throws
 * BackendUnavailableError naming the fix.
 */
export async function selectBackend(
  choice: BackendChoice,
  logger?: Logger,
  kernels: WasmKernelOptions = {},
): Promise<BackendInfo> {
  // Silences tfjs's console banners ("install tfjs-node ...") that would interleave with our logs.
  tf.enableProdMode();
  // Every backend: tfjs's Tile gradient costs one op per copy (see tile-gradient.ts).
  registerTileGradient();
  const info = await selectInner(choice, logger, kernels);
  logger?.info({ backend: info.name, gpu: info.gpu, detail: info.detail }, 'tensorflow.js backend selected');
  return info;
}

async function selectInner(
  choice: BackendChoice,
  logger: Logger | undefined,
  kernels: WasmKernelOptions,
): Promise<BackendInfo> {
  switch (choice) {
    case 'cpu':
      return activate('cpu', 'pure JavaScript (@tensorflow/tfjs-backend-cpu)');
    case 'wasm':
      return selectWasm(kernels);
    case 'tensorflow':
      return selectNative(logger);
    case 'auto':
      return selectAuto(logger, kernels);
  }
}

async function selectAuto(logger: Logger | undefined, kernels: WasmKernelOptions): Promise<BackendInfo> {
  try {
    return await selectNative(logger);
  } catch (error) {
    if (!(error instanceof BackendUnavailableError)) throw error;
    logger?.debug({ reason: error.message }, 'native backend unavailable; trying wasm');
  }
  try {
    return await selectWasm(kernels);
  } catch (error) {
    if (!(error instanceof BackendUnavailableError)) throw error;
    logger?.warn({ reason: error.message }, 'wasm backend unavailable; falling back to the slow cpu backend');
  }
  return activate('cpu', 'pure JavaScript (@tensorflow/tfjs-backend-cpu)');
}

async function selectWasm(kernels: WasmKernelOptions): Promise<BackendInfo> {
  const outcome = faultUnavailable('wasm') ?? (await importOptional(WASM_PACKAGE));
  if (!outcome.loaded) {
    const fix = outcome.missing ? `run "npm install ${WASM_PACKAGE}@${tf.version_core}"` : 'reinstall it';
    throw new BackendUnavailableError('wasm', `${outcome.reason}; ${fix}, or set backend: cpu`);
  }
  // tfjs-backend-wasm lacks some gradient kernels (Conv2DBackpropFilter) and has slow transposed
  // matmuls; see wasm-kernels.ts.
  registerWasmKernels(kernels);
  return activate('wasm', `WebAssembly (${WASM_PACKAGE})`);
}

/** Native TensorFlow: the GPU package first when a GPU may be visible, then the CPU package. */
async function selectNative(logger: Logger | undefined): Promise<BackendInfo> {
  const reasons: string[] = [];
  const candidates = gpuMayBeVisible() ? [NODE_GPU_PACKAGE, NODE_CPU_PACKAGE] : [NODE_CPU_PACKAGE];
  if (!gpuMayBeVisible()) reasons.push(`${NODE_GPU_PACKAGE} skipped (CUDA_VISIBLE_DEVICES hides all GPUs)`);
  for (const pkg of candidates) {
    const outcome = faultUnavailable('tensorflow') ?? (await importOptional(pkg));
    if (!outcome.loaded) {
      reasons.push(outcome.reason);
      continue;
    }
    warnOnVersionMismatch(pkg, outcome.module, logger);
    if (tf.findBackendFactory('tensorflow') === null) {
      reasons.push(`${pkg} loaded but registered no "tensorflow" backend`);
      continue;
    }
    const info = await activate('tensorflow', `${pkg} ${packageVersion(outcome.module)}`);
    return { ...info, detail: `${info.detail} (${info.gpu ? 'GPU' : 'CPU'})` };
  }
  throw new BackendUnavailableError(
    'tensorflow',
    `${reasons.join('; ')}; run "npm install ${NODE_CPU_PACKAGE}@${tf.version_core}" ` +
      `(or ${NODE_GPU_PACKAGE} on a CUDA machine), or set backend: wasm`,
  );
}

/** Sets and initialises `name`; failure to initialise is a BackendUnavailableError too. */
async function activate(name: string, detail: string): Promise<BackendInfo> {
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (cause) {
    throw new BackendUnavailableError(name, `initialisation failed: ${messageOf(cause)}`, { cause });
  }
  if (!ok || tf.getBackend() !== name)
    throw new BackendUnavailableError(name, 'initialisation failed (tf.setBackend returned false)');
  // The GPU flag can only be read from an initialised native backend.
  return { name, gpu: backendUsesGpu(), detail };
}

/** CUDA_VISIBLE_DEVICES set to '' or '-1' hides every GPU from TensorFlow. */
function gpuMayBeVisible(): boolean {
  const devices = process.env['CUDA_VISIBLE_DEVICES'];
  return devices === undefined || (devices.trim() !== '' && devices.trim() !== '-1');
}

/** tfjs-node's backend exposes `isUsingGpuDevice` (true when TensorFlow placed ops on a GPU). */
function backendUsesGpu(): boolean {
  if (tf.getBackend() !== 'tensorflow') return false;
  const backend: unknown = tf.backend();
  return (
    typeof backend === 'object' &&
    backend !== null &&
    (backend as { isUsingGpuDevice?: unknown }).isUsingGpuDevice === true
  );
}

function warnOnVersionMismatch(pkg: string, module: Record<string, unknown>, logger: Logger | undefined): void {
  const theirs = module['version_core'];
  if (typeof theirs === 'string' && theirs !== tf.version_core) {
    logger?.warn(
      { pkg, theirs, ours: tf.version_core },
      `${pkg} is built on tfjs-core ${theirs} but ringtrain uses ${tf.version_core}; install ${pkg}@${tf.version_core}`,
    );
  }
}

function packageVersion(module: Record<string, unknown>): string {
  const version = module['version'];
  if (typeof version === 'object' && version !== null) {
    const node = (version as Record<string, unknown>)['tfjs-node'];
    if (typeof node === 'string') return node;
  }
  return typeof module['version_core'] === 'string' ? module['version_core'] : '(unknown version)';
}

/**
 * Fault injection for drills and tests: RINGTRAIN_FAULT_BACKEND_UNAVAILABLE="wasm" (a comma list of
 * backends) makes those backends fail to load in this process, as wasm does under a tight
 * address-space limit; `auto` then falls back to the next one.
 */
function faultUnavailable(backend: string): ImportOutcome | undefined {
  const listed = (process.env['RINGTRAIN_FAULT_BACKEND_UNAVAILABLE'] ?? '').split(',').map((b) => b.trim());
  return listed.includes(backend)
    ? { loaded: false, missing: false, reason: `${backend} made unavailable by RINGTRAIN_FAULT_BACKEND_UNAVAILABLE` }
    : undefined;
}

/**
 * Imports an optional package by a variable specifier, so TypeScript does not need its types
 * and an absent package is an ordinary outcome rather than a compile or load error.
 */
async function importOptional(specifier: string): Promise<ImportOutcome> {
  try {
    const module = (await import(specifier)) as Record<string, unknown>;
    return { loaded: true, module };
  } catch (cause) {
    if (isModuleNotFound(cause, specifier))
      return { loaded: false, missing: true, reason: `${specifier} is not installed` };
    return { loaded: false, missing: false, reason: `${specifier} failed to load: ${messageOf(cause)}` };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error);
}
