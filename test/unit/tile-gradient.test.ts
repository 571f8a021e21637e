// The Tile gradient ringtrain registers (worker/backend/tile-gradient.ts) equals tfjs's own, on
// the shapes layerNormalization tiles, and replaces thousands of slice + add ops with one sum.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../worker/backend/backend.js';
import { registerTileGradient } from '../../worker/backend/tile-gradient.js';

/** tfjs's own Tile gradient, written out: the sum of every copy's slice of dy. */
function stockTileGradient(dy: tf.Tensor, x: tf.Tensor, reps: number[]): tf.Tensor {
  return tf.tidy(() => {
    let sum = tf.zerosLike(x);
    const copies = reps.reduce((a, b) => a * b, 1);
    for (let copy = 0; copy < copies; copy++) {
      let rest = copy;
      const begin = x.shape.map((size, axis) => {
        const at = rest % (reps[axis] as number);
        rest = Math.floor(rest / (reps[axis] as number));
        return at * size;
      });
      sum = tf.add(sum, tf.slice(dy, begin, x.shape));
    }
    return sum;
  });
}

function seeded(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

describe('Tile gradient', () => {
  beforeAll(async () => {
    await selectBackend('cpu');
    registerTileGradient();
  });

  for (const [shape, reps] of [
    [[5], [7]],
    [
      [1, 64],
      [96, 1],
    ],
    [
      [1, 1, 16],
      [8, 32, 1],
    ],
    [
      [2, 3, 4],
      [3, 2, 5],
    ],
    [
      [2, 1, 2, 3],
      [2, 3, 1, 2],
    ], // rank 4: tfjs's own gradient still runs
  ] as Array<[number[], number[]]>) {
    it(`x [${shape.join(', ')}] tiled by [${reps.join(', ')}]`, () => {
      const before = tf.memory().numTensors;
      const x = seeded(shape, 1);
      const dy = seeded(
        shape.map((s, i) => s * (reps[i] as number)),
        2,
      );
      const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.tile(t, reps), dy)))(x);
      const expected = stockTileGradient(dy, x, reps);
      expect(grad.shape).toEqual(shape);
      const got = grad.dataSync();
      const want = expected.dataSync();
      for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i] as number, 4);
      tf.dispose([x, dy, grad, expected]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('is what layerNormalization on a sequence uses: one sum, not one slice per copy', async () => {
    const layer = tf.layers.layerNormalization({ axis: -1 });
    const x = seeded([4, 32, 16], 3);
    layer.apply(x); // builds gamma and beta
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true }) as tf.Tensor));
      tf.dispose([value, ...Object.values(grads)]);
    });
    // tfjs's own gradient slices dy once per copy: 4·32 copies each for gamma and beta.
    expect(info.kernels.filter((k) => k.name === 'Slice').length).toBeLessThan(16);
    expect(info.kernels.some((k) => k.name === 'Tile')).toBe(true);
    x.dispose();
  });
});
