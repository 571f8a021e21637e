// Seeded inverted-dropout masks, so training is reproducible and independent of sharding.
//
// The mask of sample i at step s comes from Rng(seedFrom(seed, s, sampleIds[i])), which draws the
// masks of all dropout layers for that sample in model order. A sample's mask therefore does not
// depend on which rank holds it, on its position in the slice, or on micro-batching.
import type * as tf from '@tensorflow/tfjs';
import { Rng, seedFrom } from '../../shared/rng.js';

/** A dropout layer of the model: `units` values per sample are dropped with probability `rate`. */
export interface DropoutSite {
  layer: tf.layers.Layer;
  rate: number;
  units: number;
}

/** The model's dropout layers, in model order. */
export function dropoutSitesOf(model: tf.Sequential): DropoutSite[] {
  return model.layers
    .filter((layer) => layer.getClassName() === 'Dropout')
    .map((layer) => {
      const rate = (layer.getConfig() as { rate?: unknown }).rate;
      if (typeof rate !== 'number') throw new TypeError(`dropout layer ${layer.name} has no numeric rate`);
      const shape = layer.outputShape as (number | null)[];
      return { layer, rate, units: shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1) };
    });
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
