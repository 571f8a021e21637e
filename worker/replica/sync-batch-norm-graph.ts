// The model as the syncBatchNorm pass sees it: its layer calls (nodes) in topological order,
// each naming the tensors it reads and writes, cut at the BatchNorm nodes into segments.
//
// A stack is the special case of a chain (each segment reads one tensor and writes one). In a
// graph a tensor computed before a cut may still be read after it (a residual add around a
// BatchNorm branch, a concatenate of branches), so each cut carries the SET of live tensors:
// those computed at or before the cut and read by a later node (or the model's output).
import type * as tf from '@tensorflow/tfjs';
import { JobConfigError } from '../../shared/errors.js';

/** One layer call of the model: the ids of the symbolic tensors it reads and writes. */
export interface GraphNode {
  layer: tf.layers.Layer;
  inputs: number[];
  outputs: number[];
  /** Keyword arguments the layer was called with when the model was built (masks excluded). */
  kwargs: Record<string, unknown>;
}

/** Segment j: nodes [from, to) run on the tensors `inputs`, yielding the tensors `outputs`. */
export interface Segment {
  from: number;
  to: number;
  inputs: number[];
  /** For a segment before a cut: the BatchNorm's input first, then what the cut carries besides its output. */
  outputs: number[];
}

export interface SyncGraph {
  nodes: GraphNode[];
  input: number;
  output: number;
  /** Node indices of the BatchNorm layers, ascending. */
  cuts: number[];
  segments: Segment[];
}

/** The nodes of a one-input one-output model, or a clear refusal of what cannot be cut. */
export function syncGraphOf(model: tf.LayersModel): SyncGraph {
  const input = (model.inputs[0] as tf.SymbolicTensor).id;
  const output = (model.outputs[0] as tf.SymbolicTensor).id;
  const reached = callsReaching(model.outputs[0] as tf.SymbolicTensor, input);
  const known = new Set([input]);
  const nodes: GraphNode[] = [];
  for (const layer of model.layers) {
    const calls = layer.inboundNodes.filter((node) => reached.has(node));
    if (calls.length === 0) continue; // the InputLayer
    if (calls.length > 1)
      refuse(
        `layer ${layer.name} is applied at ${calls.length} places in the graph; the pass needs one call per layer`,
      );
    if ('layers' in layer && (layer as unknown as { layers: tf.layers.Layer[] }).layers.some(hasBatchNorm))
      refuse(`layer ${layer.name} is a nested model holding BatchNorm layers, which the pass cannot cut inside`);
    const node = calls[0] as LayerCall;
    if (!node.inputTensors.every((t) => known.has(t.id)))
      refuse(`layer ${layer.name} comes before the layers it reads in model.layers`);
    const { mask: _mask, ...kwargs } = (node.callArgs ?? {}) as Record<string, unknown>;
    nodes.push({
      layer,
      inputs: node.inputTensors.map((t) => t.id),
      outputs: node.outputTensors.map((t) => t.id),
      kwargs,
    });
    for (const t of node.outputTensors) known.add(t.id);
  }
  if (!known.has(output)) refuse('the model output is not computed by its layers in order');
  const cuts = nodes.flatMap((node, i) => (node.layer.getClassName() === 'BatchNormalization' ? [i] : []));
  for (const c of cuts) {
    const node = nodes[c] as GraphNode;
    if (node.inputs.length !== 1 || node.outputs.length !== 1)
      refuse(`BatchNorm layer ${node.layer.name} must read and write one tensor`);
  }
  return { nodes, input, output, cuts, segments: segmentsOf(nodes, input, output, cuts) };
}

type LayerCall = tf.layers.Layer['inboundNodes'][number];

/** The layer calls the model's output depends on, back to the model's input (as tfjs maps a graph). */
function callsReaching(output: tf.SymbolicTensor, input: number): Set<LayerCall> {
  const calls = new Set<LayerCall>();
  const pending = [output];
  for (let t = pending.pop(); t !== undefined; t = pending.pop()) {
    if (t.id === input) continue;
    const call = t.sourceLayer.inboundNodes[t.nodeIndex];
    if (call === undefined || calls.has(call)) continue;
    calls.add(call);
    pending.push(...call.inputTensors);
  }
  return calls;
}

function hasBatchNorm(layer: tf.layers.Layer): boolean {
  if (layer.getClassName() === 'BatchNormalization') return true;
  return 'layers' in layer && (layer as unknown as { layers: tf.layers.Layer[] }).layers.some(hasBatchNorm);
}

function refuse(why: string): never {
  throw new JobConfigError('model.syncBatchNorm', [`${why}; turn syncBatchNorm off`]);
}

/** Segments between the cuts, with the live tensors each reads and hands on. */
function segmentsOf(nodes: readonly GraphNode[], input: number, output: number, cuts: readonly number[]): Segment[] {
  // lastRead[id]: index of the last node reading it (nodes.length for the model output).
  const lastRead = new Map<number, number>();
  nodes.forEach((node, i) => node.inputs.forEach((id) => lastRead.set(id, i)));
  lastRead.set(output, nodes.length);
  const producedAt = new Map<number, number>([[input, -1]]);
  nodes.forEach((node, i) => node.outputs.forEach((id) => producedAt.set(id, i)));
  /** Tensors produced at or before node c and read after it, in id order. */
  const liveAfter = (c: number): number[] =>
    [...producedAt]
      .filter(([id, at]) => at <= c && (lastRead.get(id) ?? -1) > c)
      .map(([id]) => id)
      .sort((a, b) => a - b);
  const segments: Segment[] = [];
  let inputs = [input];
  let from = 0;
  for (const c of cuts) {
    const node = nodes[c] as GraphNode;
    const [a, y] = [node.inputs[0] as number, node.outputs[0] as number];
    const carried = liveAfter(c);
    segments.push({ from, to: c, inputs, outputs: [a, ...carried.filter((id) => id !== y && id !== a)] });
    inputs = carried;
    from = c + 1;
  }
  segments.push({ from, to: nodes.length, inputs, outputs: [output] });
  return segments;
}
