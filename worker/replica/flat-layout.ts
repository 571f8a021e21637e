// Where each model variable lives in a flat Float32Array: variables in the given order (the
// model's trainableWeights or nonTrainableWeights order), each row-major. The all-reduce, the
// optimizers and checkpoints only ever see such flat buffers.
import * as tf from '@tensorflow/tfjs';
import { hostView } from '../backend/host-view.js';

/** One variable's place in a flat buffer. */
interface Slot {
  variable: tf.LayerVariable;
  shape: number[];
  offset: number;
  size: number;
}

export class FlatLayout {
  /** Total floats = sum of the variables' sizes. */
  readonly size: number;
  private readonly slots: Slot[];

  constructor(variables: readonly tf.LayerVariable[]) {
    let offset = 0;
    this.slots = variables.map((variable) => {
      const shape = variable.read().shape; // concrete, unlike LayerVariable.shape
      const size = shape.reduce((a, b) => a * b, 1);
      const slot = { variable, shape, offset, size };
      offset += size;
      return slot;
    });
    this.size = offset;
  }

  /** The backing tf.Variables, in layout order (what tf.variableGrads needs). */
  variables(): tf.Variable[] {
    return this.slots.map(({ variable }) => {
      const value = variable.read();
      if (!isVariable(value)) throw new TypeError(`weight ${variable.name} is not backed by a tf.Variable`);
      return value;
    });
  }

  /** Copies every variable into out[0..size) with one device-to-host copy. */
  read(out: Float32Array): void {
    if (out.length < this.size) throw new RangeError(`buffer holds ${out.length} floats, need ${this.size}`);
    if (this.size === 0) return;
    const flat = tf.tidy(() => tf.concat(this.slots.map((slot) => tf.reshape(slot.variable.read(), [-1]))));
    out.set(hostView(flat));
    flat.dispose();
  }

  /** Replaces every variable's value from values[0..size): one new tensor per variable. */
  write(values: Float32Array): void {
    if (values.length < this.size) throw new RangeError(`buffer holds ${values.length} floats, need ${this.size}`);
    // wasm copies the values into its heap at once, so a view saves a per-step garbage copy; cpu
    // keeps the array it is given and tfjs-node reads it lazily, so they get a copy (slice).
    const aliases = tf.getBackend() !== 'wasm';
    for (const slot of this.slots) {
      const end = slot.offset + slot.size;
      const data = aliases ? values.slice(slot.offset, end) : values.subarray(slot.offset, end);
      // The variable takes its own reference to the new data and releases the old; tidy frees our handle.
      tf.tidy(() => {
        slot.variable.write(tf.tensor(data, slot.shape, 'float32'));
      });
    }
  }
}

function isVariable(tensor: tf.Tensor): tensor is tf.Variable {
  return tensor instanceof tf.Variable;
}
