// A small decoder-only Transformer, as a ringtrain model module: a character-level language
// model that reads T character ids and outputs the distribution of the next character.
//
//   ids [T] → token embedding + learned position embedding → BLOCKS × (pre-norm residual block:
//   x + attention(layerNorm(x)), then x + mlp(layerNorm(x))) → layerNorm → last position → softmax
//
// Multi-head causal self-attention and the position embedding are custom layers, registered with
// tf.serialization.registerClass, so a saved model.json names them and loads again wherever this
// module has been imported (registerLayers(tf)). Every initializer is seeded from job.seed, so
// every rank builds the same weights. No dropout: the model is small and trains for a few epochs.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/** Model width, heads, blocks: small enough for 2 single-threaded wasm workers. */
export const D_MODEL = 64;
export const HEADS = 2;
export const BLOCKS = 2;
export const MLP_WIDTH = 4 * D_MODEL;

/** One set of classes per TensorFlow.js instance (the worker's and a script's may differ). */
const registered = new WeakMap();

/** Defines and registers the custom layers with this `tf`; returns their classes. Idempotent. */
export function registerLayers(tf) {
  const known = registered.get(tf);
  if (known !== undefined) return known;

  /** Adds a learned embedding of each position 0..T-1 to its input [batch, T, d]. */
  class PositionEmbedding extends tf.layers.Layer {
    static className = 'RingtrainPositionEmbedding';
    constructor(args) {
      super(args);
      this.seed = args.seed;
    }
    build(inputShape) {
      const [, steps, width] = inputShape;
      const initializer = tf.initializers.randomNormal({ mean: 0, stddev: 0.02, seed: this.seed });
      this.positions = this.addWeight('positions', [steps, width], 'float32', initializer);
      this.built = true;
    }
    call(inputs) {
      return tf.tidy(() => tf.add(inputOf(inputs), this.positions.read()));
    }
    getConfig() {
      return { ...super.getConfig(), seed: this.seed };
    }
  }

  /**
   * Multi-head self-attention where position t attends to positions ≤ t only (a causal mask), on
   * [batch, T, d] with d divisible by `heads`; output [batch, T, d].
   */
  class CausalSelfAttention extends tf.layers.Layer {
    static className = 'RingtrainCausalSelfAttention';
    constructor(args) {
      super(args);
      this.heads = args.heads;
      this.seed = args.seed;
    }
    build(inputShape) {
      const width = inputShape[2];
      if (width % this.heads !== 0)
        throw new Error(`CausalSelfAttention: width ${width} is not divisible by ${this.heads} heads`);
      const kernel = (name, i) =>
        this.addWeight(name, [width, width], 'float32', tf.initializers.glorotUniform({ seed: this.seed + i }));
      const bias = (name) => this.addWeight(name, [width], 'float32', tf.initializers.zeros());
      this.query = [kernel('query_kernel', 0), bias('query_bias')];
      this.key = [kernel('key_kernel', 1), bias('key_bias')];
      this.value = [kernel('value_kernel', 2), bias('value_bias')];
      this.output_ = [kernel('output_kernel', 3), bias('output_bias')];
      this.built = true;
    }
    call(inputs) {
      return tf.tidy(() => {
        const x = inputOf(inputs);
        const [, steps, width] = x.shape;
        const headWidth = width / this.heads;
        const flat = tf.reshape(x, [-1, width]);
        const project = ([kernel, bias]) => tf.add(tf.matMul(flat, kernel.read()), bias.read());
        // [batch·T, d] → [batch, heads, T, headWidth] → [batch·heads, T, headWidth]
        const split = (t) =>
          tf.reshape(tf.transpose(tf.reshape(t, [-1, steps, this.heads, headWidth]), [0, 2, 1, 3]), [
            -1,
            steps,
            headWidth,
          ]);
        const q = split(project(this.query));
        const k = split(project(this.key));
        const v = split(project(this.value));
        const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(headWidth)), causalMask(tf, steps));
        const attended = tf.matMul(tf.softmax(scores), v);
        const merged = tf.reshape(
          tf.transpose(tf.reshape(attended, [-1, this.heads, steps, headWidth]), [0, 2, 1, 3]),
          [-1, width],
        );
        const [kernel, bias] = this.output_;
        return tf.reshape(tf.add(tf.matMul(merged, kernel.read()), bias.read()), [-1, steps, width]);
      });
    }
    getConfig() {
      return { ...super.getConfig(), heads: this.heads, seed: this.seed };
    }
  }

  /**
   * Layer normalization over the last axis, with learned gain and offset broadcast over
   * [batch, T]. Not tf.layers.layerNormalization: that one tiles gain and offset to the full
   * [batch, T, d] shape, and the gradient of Tile is a loop of one slice and add per tile
   * (batch × T of them per layer and step), which made a training step ~50× slower than the
   * rest of this model put together.
   */
  class LayerNorm extends tf.layers.Layer {
    static className = 'RingtrainLayerNorm';
    constructor(args) {
      super(args);
      this.epsilon = args.epsilon ?? 1e-5;
    }
    build(inputShape) {
      const width = inputShape[inputShape.length - 1];
      this.gain = this.addWeight('gain', [width], 'float32', tf.initializers.ones());
      this.offset = this.addWeight('offset', [width], 'float32', tf.initializers.zeros());
      this.built = true;
    }
    call(inputs) {
      return tf.tidy(() => {
        const x = inputOf(inputs);
        const { mean, variance } = tf.moments(x, -1, true);
        const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.epsilon)));
        return tf.add(tf.mul(normed, this.gain.read()), this.offset.read());
      });
    }
    getConfig() {
      return { ...super.getConfig(), epsilon: this.epsilon };
    }
  }

  /** [batch, T, d] → [batch, d]: the last position, the one that has seen the whole context. */
  class LastPosition extends tf.layers.Layer {
    static className = 'RingtrainLastPosition';
    computeOutputShape(inputShape) {
      return [inputShape[0], inputShape[2]];
    }
    call(inputs) {
      return tf.tidy(() => {
        const x = inputOf(inputs);
        const [, steps, width] = x.shape;
        return tf.reshape(tf.slice(x, [0, steps - 1, 0], [-1, 1, width]), [-1, width]);
      });
    }
  }

  for (const cls of [PositionEmbedding, CausalSelfAttention, LayerNorm, LastPosition])
    tf.serialization.registerClass(cls);
  const classes = { PositionEmbedding, CausalSelfAttention, LayerNorm, LastPosition };
  registered.set(tf, classes);
  return classes;
}

function inputOf(inputs) {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

/** [T, T]: 0 where key ≤ query, −1e9 above the diagonal (softmax then gives those keys 0). */
function causalMask(tf, steps) {
  const mask = new Float32Array(steps * steps);
  for (let query = 0; query < steps; query++)
    for (let key = query + 1; key < steps; key++) mask[query * steps + key] = -1e9;
  return tf.tensor2d(mask, [steps, steps]);
}

/**
 * The vocabulary size: the symbols in moby-vocab.json, which make-sequence-data.mjs writes beside
 * the CSV the job trains on.
 */
export function vocabSizeOf(job) {
  const file = path.join(path.dirname(job.data.path), 'moby-vocab.json');
  return JSON.parse(readFileSync(file, 'utf8')).vocab.length;
}

/** The model of a job: context = job.model.input[0]; `options` (context, vocabSize) serve scripts without a job. */
export function createModel(tf, job, options = {}) {
  const { PositionEmbedding, CausalSelfAttention, LayerNorm, LastPosition } = registerLayers(tf);
  const context = options.context ?? job.model.input?.[0] ?? 48;
  const vocabSize = options.vocabSize ?? vocabSizeOf(job);
  const seed = (job.seed ?? 42) * 100;
  let seedOffset = 0;
  const nextSeed = () => seed + 10 * seedOffset++;
  const dense = (units, activation, name) =>
    tf.layers.dense({
      units,
      activation,
      name,
      kernelInitializer: tf.initializers.glorotUniform({ seed: nextSeed() }),
    });

  const ids = tf.input({ shape: [context], name: 'ids' });
  const tokens = tf.layers
    .embedding({
      inputDim: vocabSize,
      outputDim: D_MODEL,
      name: 'tokens',
      embeddingsInitializer: tf.initializers.randomNormal({ mean: 0, stddev: 0.02, seed: nextSeed() }),
    })
    .apply(ids);
  let x = new PositionEmbedding({ name: 'positions', seed: nextSeed() }).apply(tokens);
  for (let b = 0; b < BLOCKS; b++) {
    const attention = new CausalSelfAttention({ name: `attention_${b}`, heads: HEADS, seed: nextSeed() });
    const normed = new LayerNorm({ name: `norm_attention_${b}` }).apply(x);
    x = tf.layers.add({ name: `residual_attention_${b}` }).apply([x, attention.apply(normed)]);
    const hidden = dense(MLP_WIDTH, 'relu', `mlp_hidden_${b}`).apply(new LayerNorm({ name: `norm_mlp_${b}` }).apply(x));
    x = tf.layers.add({ name: `residual_mlp_${b}` }).apply([x, dense(D_MODEL, 'linear', `mlp_out_${b}`).apply(hidden)]);
  }
  const last = new LastPosition({ name: 'last' }).apply(new LayerNorm({ name: 'norm_final' }).apply(x));
  const probs = dense(vocabSize, 'softmax', 'next').apply(last);
  return tf.model({ inputs: ids, outputs: probs, name: 'moby_transformer' });
}
