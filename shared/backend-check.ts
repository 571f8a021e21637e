// A cheap check, without loading TensorFlow.js, that an explicitly requested native backend is
// installed: `ringtrain train --backend tensorflow` then fails before any process starts.
import { createRequire } from 'node:module';
import { BackendUnavailableError } from './errors.js';

const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

export function assertBackendInstalled(choice: string): void {
  if (choice !== 'tensorflow') return; // wasm and cpu are dependencies; auto falls back
  const require = createRequire(import.meta.url);
  for (const pkg of NATIVE_PACKAGES) {
    try {
      require.resolve(pkg);
      return;
    } catch {
      // not installed; try the next one
    }
  }
  throw new BackendUnavailableError(
    'tensorflow',
    'neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed; run "npm install @tensorflow/tfjs-node@4.22.0" (or @tensorflow/tfjs-node-gpu on a CUDA machine), or use --backend wasm',
  );
}
