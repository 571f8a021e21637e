// Seeded inverted-dropout masks, so training is reproducible and independent of sharding.
//
// The mask of sample i at step s comes from Rng(seedFrom(seed, s, sampleIds[i])), which draws the
// masks of all dropout layers for that sample in model order (for a graph: topological order,
// model.layers). Replica installs the masks by overriding each Dropout layer's call, so a mask
// applies wherever the layer sits in the graph. A sample's mask therefore does not
// depend on which rank holds it, on its position in the slice, or on micro-batching.
import type * as tf from '@tensorflow/tfjs';
import { UnseededLayerError } from '../../shared/errors.js';
import { Rng, seedFrom } from '../../shared/rng.js';

/** A dropout layer of the model: `units` values per sample are dropped with probability `rate`. */
export interface DropoutSite {
  layer: tf.layers.Layer;
  rate: number;
  units: number;
}

/**
 * The model's dropout layers in model order: model.layers order (a stack's order; a functional
 * model's topological order), nested models expanded where they sit. A Dropout layer applied at
 * more than one place in the graph is refused: its sites would share one mask shape.
 */
export function dropoutSitesOf(model: tf.LayersModel): DropoutSite[] {
  return layersOf(model)
    .filter((layer) => layer.getClassName() === 'Dropout')
    .map((layer) => {
      const config = layer.getConfig() as { rate?: unknown; noiseShape?: unknown };
      if (typeof config.rate !== 'number') throw new TypeError(`dropout layer ${layer.name} has no numeric rate`);
      if (config.noiseShape !== null && config.noiseShape !== undefined)
        throw new UnseededLayerError(layer.name, 'a Dropout layer with noiseShape (its seeded masks are per unit)');
      if (layer.inboundNodes.length > 1)
        throw new UnseededLayerError(layer.name, 'a Dropout layer applied at more than one place in the graph');
      const shape = layer.outputShape as (number | null)[];
      return { layer, rate: config.rate, units: shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1) };
    });
}

/** Every layer of `model`, nested models (layers that are models themselves) replaced by their layers. */
export function layersOf(model: tf.LayersModel): tf.layers.Layer[] {
  return model.layers.flatMap((layer) =>
    'layers' in layer && Array.isArray(layer.layers) ? layersOf(layer as tf.LayersModel) : [layer],
  );
}

/**
 * One Float32Array per site, [count × units], holding 0 (dropped) or 1/(1−rate) (kept). A site
 * with rate 0 gets an empty array and consumes no random numbers.
 */
export function dropoutMasks(
  sites: readonly DropoutSite[],
  seed: number,
  step: number,
  sampleIds: Uint32Array,
  count: number,
): Float32Array[] {
  const masks = sites.map((site) => new Float32Array(site.rate > 0 ? count * site.units : 0));
  if (sites.every((site) => site.rate === 0)) return masks;
  for (let i = 0; i < count; i++) {
    const rng = new Rng(seedFrom(seed, step, sampleIds[i] as number));
    sites.forEach((site, s) => {
      if (site.rate === 0) return;
      const mask = masks[s] as Float32Array;
      const keep = 1 / (1 - site.rate);
      for (let u = 0, at = i * site.units; u < site.units; u++, at++) mask[at] = rng.next() < site.rate ? 0 : keep;
    });
  }
  return masks;
}
