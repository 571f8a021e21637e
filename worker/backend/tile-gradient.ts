// A faster gradient for Tile, registered over tfjs's own. tfjs 4.22's Tile gradient adds one
// slice of dy per copy (reps[0]·reps[1]·… slice + add ops), which layerNormalization on a sequence
// ([batch, T, d]: its gamma and beta are tiled to the input's shape) turns into thousands of ops
// per step: a Transformer step ran about 50× slower than its forward pass suggests. The same sum
// in one op: dy viewed as [reps0, x0, reps1, x1, ...] summed over the reps axes. Same values up
// to float32 summation order (test/unit/tile-gradient.test.ts holds it to tfjs's own).
import * as tf from '@tensorflow/tfjs';

/** Ranks handled by one reshape + sum (the reshaped view has twice the rank; kernels go to 6). */
const MAX_RANK = 3;

let registered = false;

/** Registers the faster Tile gradient once per process; tfjs's own stays for ranks above 3. */
export function registerTileGradient(): void {
  if (registered) return;
  const stock = tf.getGradient('Tile');
  if (stock === undefined) return;
  const config: tf.GradConfig = {
    kernelName: 'Tile',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const dyTensor = Array.isArray(dy) ? (dy[0] as tf.Tensor) : dy;
      const [x] = saved as [tf.Tensor];
      if (x.rank > MAX_RANK) return stock.gradFunc(dy, saved, attrs);
      const { reps } = attrs as unknown as { reps: number[] };
      return {
        x: () => {
          const view = x.shape.flatMap((size, axis) => [reps[axis] ?? 1, size]);
          const repAxes = x.shape.map((_, axis) => 2 * axis);
          return tf.sum(tf.reshape(dyTensor, view), repAxes);
        },
      };
    },
  };
  // registerGradient warns when it replaces one; this replacement is deliberate.
  const warn = console.warn;
  console.warn = () => undefined;
  try {
    tf.registerGradient(config);
  } finally {
    console.warn = warn;
  }
  registered = true;
}
