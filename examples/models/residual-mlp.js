// A model written in code for ringtrain (`model: { module: ./models/residual-mlp.js }`): an MLP
// with a residual block, dropout, and a custom layer registered the TensorFlow.js way.
//
// ringtrain calls createModel(tf, job) on every worker (and once on the coordinator, to check the
// model against the data) with its own TensorFlow.js and the resolved job, and trains the
// tf.LayersModel it returns. Use the `tf` it passes, not an import of your own: custom layers
// must be registered with the same TensorFlow.js that builds and saves the model.

/** y = x · scale, one trainable scale per feature: a tiny custom layer with its own weight. */
function defineFeatureScale(tf) {
  class FeatureScale extends tf.layers.Layer {
    static className = 'FeatureScale';
    build(inputShape) {
      this.scale = this.addWeight('scale', [inputShape[inputShape.length - 1]], 'float32', tf.initializers.ones());
      this.built = true;
    }
    call(inputs) {
      return tf.tidy(() => tf.mul(Array.isArray(inputs) ? inputs[0] : inputs, this.scale.read()));
    }
  }
  // Registered once per process: the class then (de)serialises by name, e.g. in the exported model.
  tf.serialization.registerClass(FeatureScale);
  return FeatureScale;
}

let FeatureScale;

export function createModel(tf, job) {
  FeatureScale ??= defineFeatureScale(tf);
  const width = 32;
  const input = tf.input({ shape: job.model.input });
  const scaled = new FeatureScale({ name: 'feature_scale' }).apply(input);
  const stem = tf.layers.dense({ units: width, activation: 'relu', name: 'stem' }).apply(scaled);
  // Residual block: stem + dense(dropout(dense(stem))).
  const inner = tf.layers.dense({ units: width, activation: 'relu', name: 'block_dense_1' }).apply(stem);
  const dropped = tf.layers.dropout({ rate: 0.2, name: 'block_dropout' }).apply(inner);
  const branch = tf.layers.dense({ units: width, name: 'block_dense_2' }).apply(dropped);
  const sum = tf.layers.add({ name: 'block_add' }).apply([stem, branch]);
  const activated = tf.layers.activation({ activation: 'relu', name: 'block_relu' }).apply(sum);
  const output = tf.layers.dense({ units: 10, activation: 'softmax', name: 'head' }).apply(activated);
  return tf.model({ inputs: input, outputs: output, name: 'residual_mlp' });
}
