// The graph form of model.layers: each layer may have a `name` and name its `inputs` (earlier
// layers, or "input" for the model's input), so residual blocks and branches can be written.
// This module resolves names and validates the wiring; worker/replica/model-builder.ts builds
// the tf.model from the result.
//
// Invariants of a resolved graph: names are unique; every layer's inputs are "input" or layers
// listed before it (so list order is a topological order); every layer but the last feeds a
// later one (the model's single output is the last layer).
import type { LayerSpec } from './layer-schema.js';

/** What a layer's `inputs` may name besides earlier layers: the model's input. */
export const MODEL_INPUT = 'input';

export interface GraphNode {
  name: string;
  /** MODEL_INPUT or names of earlier nodes. */
  inputs: string[];
}

/** True when the layers need a graph (some layer names inputs, or merges branches), not a stack. */
export function isGraph(layers: readonly LayerSpec[]): boolean {
  return layers.some((layer) => layer.inputs !== undefined || layer.type === 'add' || layer.type === 'concatenate');
}

/** The default name of layer `index`: `<type>_<index>`, as the stack form has always used. */
export function layerName(layer: LayerSpec, index: number): string {
  return layer.name ?? `${layer.type}_${index}`;
}

/**
 * Resolves names and inputs. Returns the nodes and a list of problems, each naming its field
 * (`model.layers.N.inputs: ...`); the nodes are only meaningful when there are no problems.
 */
export function resolveGraph(layers: readonly LayerSpec[]): { nodes: GraphNode[]; problems: string[] } {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const allNames = new Map(layers.map((layer, i) => [layerName(layer, i), i]));
  const used = new Set<string>();
  const nodes = layers.map((layer, i): GraphNode => {
    const name = layerName(layer, i);
    if (name === MODEL_INPUT)
      problems.push(`model.layers.${i}.name: "${MODEL_INPUT}" names the model's input; choose another name`);
    else if (seen.has(name))
      problems.push(`model.layers.${i}.name: "${name}" is already the name of model.layers.${seen.get(name)}`);
    seen.set(name, i);
    const inputs = layer.inputs ?? [i === 0 ? MODEL_INPUT : layerName(layers[i - 1] as LayerSpec, i - 1)];
    for (const input of inputs) {
      used.add(input);
      if (input === MODEL_INPUT || (seen.has(input) && seen.get(input) !== i)) continue;
      const at = allNames.get(input);
      if (at === undefined)
        problems.push(
          `model.layers.${i}.inputs: no layer is named "${input}" (use "${MODEL_INPUT}" or an earlier layer's name)`,
        );
      else
        problems.push(
          `model.layers.${i}.inputs: "${input}" is model.layers.${at}, which is not before this layer; a layer can only take earlier layers`,
        );
    }
    problems.push(...arityProblems(layer, inputs, i));
    return { name, inputs };
  });
  nodes.slice(0, -1).forEach((node, i) => {
    if (!used.has(node.name))
      problems.push(
        `model.layers.${i}.inputs: "${node.name}" feeds no later layer; the model's output is the last layer, so every other layer must be some later layer's input`,
      );
  });
  return { nodes, problems };
}

function arityProblems(layer: LayerSpec, inputs: readonly string[], i: number): string[] {
  const merges = layer.type === 'add' || layer.type === 'concatenate';
  if (merges && inputs.length < 2)
    return [`model.layers.${i}.inputs: ${layer.type} needs two or more inputs, got ${inputs.length}`];
  if (!merges && inputs.length !== 1)
    return [
      `model.layers.${i}.inputs: ${layer.type} takes one input, got ${inputs.length}; merge branches with add or concatenate first`,
    ];
  return [];
}
