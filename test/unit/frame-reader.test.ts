// The ring's stream parser, fed in arbitrary pieces: whole-payload storage and the window a
// reduce-scatter payload is summed through must give the same frames and the same sums.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CollectiveError } from '../../shared/errors.js';
import { emptyHeader, FRAME_HEADER_BYTES, FrameKind, writeHeader } from '../../worker/transport/frame.js';
import { FrameReader } from '../../worker/transport/frame-reader.js';

function frameBytes(values: Float32Array, chunk: number): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + values.byteLength);
  writeHeader(frame, {
    ...emptyHeader(),
    kind: FrameKind.data,
    generation: 1,
    chunk,
    length: values.length,
    payloadBytes: values.byteLength,
  });
  Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

/** Feeds `stream` the way net.Socket's onread does: each read fills part of nextBuffer(). */
function feed(reader: FrameReader, stream: Buffer, readSizes: number[]): void {
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const region = reader.nextBuffer();
    const take = Math.min(region.byteLength, stream.length - at, readSizes[i % readSizes.length]!);
    region.set(stream.subarray(at, at + take));
    at += take;
    reader.advance(take);
  }
}

describe('FrameReader', () => {
  it('sums windowed payloads exactly as whole ones, for any read sizes and window sizes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 4, max: 64 }),
        (lengths, readSizes, windowBytes) => {
          const payloads = lengths.map((length, f) => Float32Array.from({ length }, (_, i) => i * 0.5 + f));
          const stream = Buffer.concat(payloads.map((values, f) => frameBytes(values, f)));
          const sums = lengths.map((length) => new Float32Array(length).fill(1));
          const window = new Uint8Array(windowBytes);
          let current = -1;
          const seen: number[] = [];
          const reader = new FrameReader({
            payloadTarget: () => expect.fail('every payload goes through the window'),
            payloadWindow: (header) => {
              current = header.chunk;
              return window;
            },
            consumeWindow: (filled, payloadOffset) => {
              expect(payloadOffset % 4).toBe(0);
              const floats = filled >>> 2;
              const view = new Float32Array(window.buffer, 0, floats);
              const target = sums[current]!;
              for (let i = 0; i < floats; i++) target[payloadOffset / 4 + i]! += view[i]!;
              return floats * 4;
            },
            frame: (header, payload) => {
              expect(payload.byteLength).toBe(0);
              seen.push(header.chunk);
            },
          });
          feed(reader, stream, readSizes);
          // Empty payloads complete without a window; every frame arrives once, in order.
          expect(seen).toEqual(lengths.map((_, f) => f));
          for (const [f, values] of payloads.entries())
            expect([...sums[f]!]).toEqual([...values].map((value) => Math.fround(value + 1)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('fails a frame whose window bytes were not all consumed at its end', () => {
    const reader = new FrameReader({
      payloadTarget: () => new Uint8Array(0),
      payloadWindow: () => new Uint8Array(16),
      consumeWindow: () => 0,
      frame: () => undefined,
    });
    expect(() => feed(reader, frameBytes(new Float32Array(3), 0), [1000])).toThrow(CollectiveError);
  });
});
