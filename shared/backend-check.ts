// A cheap check, without loading TensorFlow.js, that an explicitly requested native backend is
// installed: `ringtrain train --backend tensorflow` then fails before any process starts.
import { createRequire } from 'node:module';
import { BackendUnavailableError } from './errors.js';

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

export function assertBackendInstalled(choice: string): void {
  if (choice !== 'tensorflow') return; // wasm and cpu are dependencies; auto falls back
  if (nativeBackendInstalled()) return;
  throw new BackendUnavailableError(
    'tensorflow',
    'neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed; run "npm install @tensorflow/tfjs-node@4.22.0" (or @tensorflow/tfjs-node-gpu on a CUDA machine), or use --backend wasm',
  );
}

/** True when a native TensorFlow package resolves here (what `auto` tries first). */
export function nativeBackendInstalled(): boolean {
  const require = createRequire(import.meta.url);
  return NATIVE_PACKAGES.some((pkg) => {
    try {
      require.resolve(pkg);
      return true;
    } catch {
      return false; // not installed
    }
  });
}

/**
 * The backend a job's workers on this machine end up with, as far as the packages tell: `auto`
 * is native TensorFlow when installed, else wasm (wasm is a dependency, so its fallback to cpu
 * is an error case).
 */
export function expectedBackend(choice: string): 'tensorflow' | 'wasm' | 'cpu' {
  if (choice === 'auto') return nativeBackendInstalled() ? 'tensorflow' : 'wasm';
  return choice === 'tensorflow' || choice === 'cpu' ? choice : 'wasm';
}
