// Backend selection on this machine: cpu and wasm load, native TensorFlow only if installed.
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '../../shared/errors.js';
import { selectBackend } from '../../worker/backend/backend.js';

/** Whether @tensorflow/tfjs-node is resolvable here (it is an optional peer, normally absent). */
function nativeInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
}

const savedCuda = process.env['CUDA_VISIBLE_DEVICES'];
afterEach(() => {
  if (savedCuda === undefined) delete process.env['CUDA_VISIBLE_DEVICES'];
  else process.env['CUDA_VISIBLE_DEVICES'] = savedCuda;
});

describe('selectBackend', () => {
  it('selects the pure-JS cpu backend', async () => {
    const info = await selectBackend('cpu');
    expect(info).toMatchObject({ name: 'cpu', gpu: false });
    expect(tf.getBackend()).toBe('cpu');
  });

  it('selects wasm and computes on it', async () => {
    const info = await selectBackend('wasm');
    expect(info).toMatchObject({ name: 'wasm', gpu: false });
    expect(tf.getBackend()).toBe('wasm');
    const product = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync());
    expect([...product]).toEqual([11]);
  });

  it.skipIf(nativeInstalled())('refuses "tensorflow" without tfjs-node and says how to install it', async () => {
    const attempt = selectBackend('tensorflow');
    await expect(attempt).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(attempt).rejects.toThrow(/npm install @tensorflow\/tfjs-node/);
    // A failed explicit choice leaves the previous backend in place.
    expect(['cpu', 'wasm']).toContain(tf.getBackend());
  });

  it.skipIf(nativeInstalled())('skips the GPU package when CUDA_VISIBLE_DEVICES hides every GPU', async () => {
    process.env['CUDA_VISIBLE_DEVICES'] = '-1';
    await expect(selectBackend('tensorflow')).rejects.toThrow(/tfjs-node-gpu skipped/);
  });

  it('resolves "auto" to native TensorFlow when installed, else wasm', async () => {
    await selectBackend('cpu');
    const info = await selectBackend('auto');
    expect(info.name).toBe(nativeInstalled() ? 'tensorflow' : 'wasm');
    expect(tf.getBackend()).toBe(info.name);
  });
});
