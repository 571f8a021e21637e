// Layers whose randomness ringtrain cannot seed. Dropout is replaced by seeded masks
// (dropout-masks.ts); these draw their own random numbers inside tf.js during training, so the
// same job would train differently on 1 and N workers. Refused before training, naming the layer.
// A custom layer that calls tf.dropout or tf.random* in its call() cannot be detected: see the
// README's "Bring your own model".
import type * as tf from '@tensorflow/tfjs';
import { UnseededLayerError } from '../../shared/errors.js';
import { layersOf } from './dropout-masks.js';

/** Layer classes that are random in training whatever their configuration. */
const ALWAYS_RANDOM: ReadonlyMap<string, string> = new Map([
  ['GaussianNoise', 'a GaussianNoise layer'],
  ['GaussianDropout', 'a GaussianDropout layer'],
  ['AlphaDropout', 'an AlphaDropout layer'],
  ['SpatialDropout1D', 'a SpatialDropout1D layer'],
  ['SpatialDropout2D', 'a SpatialDropout2D layer'],
]);

/** Throws UnseededLayerError for the first layer of `model` with unseedable training randomness. */
export function assertSeedable(model: tf.LayersModel): void {
  for (const layer of layersOf(model)) {
    const className = layer.getClassName();
    const always = ALWAYS_RANDOM.get(className);
    if (always !== undefined) throw new UnseededLayerError(layer.name, always);
    const config = layer.getConfig() as { dropout?: unknown; recurrentDropout?: unknown };
    // Recurrent layers (LSTM, GRU, SimpleRNN, RNN, Bidirectional wrappers carry it in their cell config).
    for (const key of ['dropout', 'recurrentDropout'] as const) {
      const rate = config[key] ?? cellConfig(layer)?.[key];
      if (typeof rate === 'number' && rate > 0)
        throw new UnseededLayerError(layer.name, `a ${className} layer with ${key} ${rate}`);
    }
  }
}

function cellConfig(layer: tf.layers.Layer): Record<string, unknown> | undefined {
  const cell = (layer as { cell?: { getConfig?: () => Record<string, unknown> } }).cell;
  return typeof cell?.getConfig === 'function' ? cell.getConfig() : undefined;
}
