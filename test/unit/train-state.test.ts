// The training-state blob: bit-exact round trips, alignment, and CheckpointError on damage.
import { describe, expect, it } from 'vitest';
import { CheckpointError } from '../../shared/errors.js';
import { optimizerSchema } from '../../shared/job-schema.js';
import { decodeTrainState, encodeTrainState, type TrainState } from '../../shared/train-state.js';
import { createOptimizer } from '../../worker/replica/optimizers/optimizer.js';

function bits(values: Float32Array): number[] {
  return [...new Uint32Array(values.slice().buffer)];
}

function sampleState(): TrainState {
  const params = Float32Array.from([1.5, -0, 0, Infinity, -Infinity, 1e-45, 3.4028234e38, 0]);
  new Uint32Array(params.buffer)[7] = 0x7fc01234; // a quiet NaN with a payload, set bitwise
  return {
    cursor: { step: 123, epoch: 2, batchInEpoch: 17 },
    params,
    nonTrainable: new Float32Array([0.25, 4]),
    optimizer: { type: 'adam', step: 123, slots: { m: new Float32Array([0.1, 0.2, 0.3]), v: new Float32Array([7]) } },
    extra: { earlyStopping: { best: 0.42, wait: 1 }, note: 'ünïcødé' },
  };
}

function expectSameState(actual: TrainState, expected: TrainState): void {
  expect(actual.cursor).toEqual(expected.cursor);
  expect(bits(actual.params)).toEqual(bits(expected.params));
  expect(bits(actual.nonTrainable)).toEqual(bits(expected.nonTrainable));
  expect(actual.optimizer.type).toBe(expected.optimizer.type);
  expect(actual.optimizer.step).toBe(expected.optimizer.step);
  expect(Object.keys(actual.optimizer.slots)).toEqual(Object.keys(expected.optimizer.slots));
  for (const [name, slot] of Object.entries(expected.optimizer.slots))
    expect(bits(actual.optimizer.slots[name] ?? new Float32Array(0))).toEqual(bits(slot));
  expect(actual.extra).toEqual(expected.extra);
}

function expectCheckpointError(bytes: Uint8Array, reason: RegExp): void {
  let caught: unknown;
  try {
    decodeTrainState(bytes, 'runs/x/checkpoints/step-000123/state.bin');
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(CheckpointError);
  expect((caught as CheckpointError).path).toBe('runs/x/checkpoints/step-000123/state.bin');
  expect((caught as CheckpointError).message).toMatch(reason);
}

describe('encodeTrainState / decodeTrainState', () => {
  it('round-trips bit-exactly, including -0, ±Infinity, subnormals and NaN payloads', () => {
    const state = sampleState();
    const bytes = encodeTrainState(state);
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('RTST');
    const decoded = decodeTrainState(bytes, 'mem');
    expectSameState(decoded, state);
    expect(new Uint32Array(decoded.params.buffer)[7]).toBe(0x7fc01234);
  });

  it('round-trips empty sections and leaves extra absent when it was absent', () => {
    const state: TrainState = {
      cursor: { step: 0, epoch: 0, batchInEpoch: 0 },
      params: new Float32Array(0),
      nonTrainable: new Float32Array(0),
      optimizer: { type: 'sgd', step: 0, slots: {} },
    };
    const decoded = decodeTrainState(encodeTrainState(state), 'mem');
    expectSameState(decoded, state);
    expect('extra' in decoded).toBe(false);
  });

  it('decodes from an unaligned view into aligned copies that do not alias the input', () => {
    const bytes = encodeTrainState(sampleState());
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const view = shifted.subarray(3);
    const decoded = decodeTrainState(view, 'mem');
    expectSameState(decoded, sampleState());
    for (const arr of [decoded.params, decoded.nonTrainable, ...Object.values(decoded.optimizer.slots)])
      expect(arr.byteOffset % 4).toBe(0);
    view.fill(0);
    expect(decoded.params[0]).toBe(1.5);
  });

  it('restores an optimizer that then continues bit-identically', () => {
    const optimizerSpec = optimizerSchema.parse({ type: 'adam', learningRate: 0.01, weightDecay: 0.1 });
    const optimizer = createOptimizer(optimizerSpec, 3);
    const params = new Float32Array([1, 2, 3]);
    optimizer.apply(params, new Float32Array([0.1, -0.2, 0.3]), 0.01);
    const blob = encodeTrainState({
      cursor: { step: 1, epoch: 0, batchInEpoch: 1 },
      params,
      nonTrainable: new Float32Array(0),
      optimizer: optimizer.exportState(),
    });

    const decoded = decodeTrainState(blob, 'mem');
    const restored = createOptimizer(optimizerSpec, 3);
    restored.importState(decoded.optimizer);
    const grad = new Float32Array([-0.5, 0.5, 0.05]);
    optimizer.apply(params, grad, 0.01);
    restored.apply(decoded.params, grad, 0.01);
    expect(bits(decoded.params)).toEqual(bits(params));
  });

  it('rejects every truncation with CheckpointError', () => {
    const bytes = encodeTrainState(sampleState());
    for (let length = 0; length < bytes.length; length++)
      expectCheckpointError(bytes.subarray(0, length), /truncated|header|JSON/);
    expectCheckpointError(bytes.subarray(0, bytes.length - 4), /truncated: expected \d+ bytes/);
  });

  it('rejects bad magic, an unknown version and trailing bytes', () => {
    const bytes = encodeTrainState(sampleState());
    const badMagic = bytes.slice();
    badMagic[0] = 'X'.charCodeAt(0);
    expectCheckpointError(badMagic, /not a ringtrain state blob/);

    const badVersion = bytes.slice();
    new DataView(badVersion.buffer).setUint32(4, 99, true);
    expectCheckpointError(badVersion, /unsupported format version 99/);

    const longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expectCheckpointError(longer, /trailing bytes/);
  });

  it('rejects a flipped bit in the data or the header', () => {
    const bytes = encodeTrainState(sampleState());
    const dataFlip = bytes.slice();
    dataFlip[dataFlip.length - 1] = (dataFlip[dataFlip.length - 1] ?? 0) ^ 1;
    expectCheckpointError(dataFlip, /checksum mismatch/);

    const headerFlip = bytes.slice();
    const headerText = new TextDecoder().decode(headerFlip.subarray(16, 40));
    const at = 16 + headerText.indexOf('123');
    headerFlip[at] = '9'.charCodeAt(0);
    expectCheckpointError(headerFlip, /checksum mismatch/);
  });

  it('rejects a well-formed blob whose header breaks the schema', () => {
    const header = JSON.stringify({
      cursor: { step: -1, epoch: 0, batchInEpoch: 0 },
      optimizer: { type: 'sgd', step: 0, slots: [] },
      paramCount: 0,
      nonTrainableCount: 0,
    });
    const headerBytes = new TextEncoder().encode(header);
    const blob = new Uint8Array((16 + headerBytes.length + 3) & ~3);
    blob.set(new TextEncoder().encode('RTST'));
    new DataView(blob.buffer).setUint32(4, 1, true);
    new DataView(blob.buffer).setUint32(8, headerBytes.length, true);
    blob.set(headerBytes, 16);
    expectCheckpointError(blob, /malformed header: cursor\.step/);
  });

  it('refuses to encode a cursor that is not a non-negative integer', () => {
    const state = sampleState();
    state.cursor.step = 1.5;
    expect(() => encodeTrainState(state)).toThrow(RangeError);
  });
});
