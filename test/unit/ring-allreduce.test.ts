// Ring all-reduce core, frame inbox and float codec, all in one process: N async ranks joined
// by in-memory links that deliver out of order and after random delays.
import { describe, expect, it } from 'vitest';
import { CollectiveError } from '../../shared/errors.js';
import { decodeFloat32LE, encodeFloat32LE } from '../../worker/collectives/float-codec.js';
import { FrameInbox } from '../../worker/collectives/frame-inbox.js';
import {
  allReduceBytesPerRank,
  MAX_CHUNK_ELEMS,
  MAX_CHUNKS_PER_SEGMENT,
  pipelineChunkElems,
  ringAllReduce,
  segmentBounds,
  type RingLink,
} from '../../worker/collectives/ring-allreduce.js';

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Yields to the event loop a random number of times (0..3), shuffling interleavings. */
async function jitter(random: () => number): Promise<void> {
  const hops = Math.floor(random() * 4);
  for (let i = 0; i < hops; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * One in-memory ring: rank r's sends land (copied, after jitter) in rank (r+1)'s inbox. With
 * `placing`, links accept placements and a placed chunk is copied into the receiver's buffer
 * and delivered as that very region, as the TCP transport does.
 */
function memoryRing(
  worldSize: number,
  random: () => number,
  placing = false,
): { links: RingLink[]; inboxes: FrameInbox[] } {
  const inboxes = Array.from({ length: worldSize }, (_, rank) => new FrameInbox((rank - 1 + worldSize) % worldSize));
  const links = inboxes.map((inbox, rank): RingLink => {
    const right = inboxes[(rank + 1) % worldSize]!;
    const link: RingLink = {
      async send(chunk) {
        const key = { step: 0, collective: 0, round: chunk.round, chunk: chunk.chunk };
        const copy = chunk.data.slice();
        void jitter(random).then(() => {
          const placement = right.claimPlacement(key);
          if (placement !== undefined) expect(placement.offset).toBe(chunk.offset);
          right.deliver(key, placement === undefined ? copy : (placement.target.set(copy), placement.target));
        });
        await jitter(random);
      },
      receive: (round, chunk) => inbox.take({ step: 0, collective: 0, round, chunk }),
    };
    if (placing) {
      link.placeAt = (round, chunk, offset, target) =>
        inbox.place({ step: 0, collective: 0, round, chunk }, { offset, target });
    }
    return link;
  });
  return { links, inboxes };
}

function randomBuffers(worldSize: number, length: number, random: () => number): Float32Array[] {
  return Array.from({ length: worldSize }, () =>
    Float32Array.from({ length }, () => (random() - 0.5) * 2 ** Math.floor(random() * 20 - 10)),
  );
}

/** Runs the ring on copies of `inputs`; on the first failure fails every inbox so no rank hangs. */
async function runRing(
  inputs: Float32Array[],
  chunkElems: number,
  random: () => number,
  placing = false,
): Promise<Float32Array[]> {
  const worldSize = inputs.length;
  const { links, inboxes } = memoryRing(worldSize, random, placing);
  const buffers = inputs.map((input) => input.slice());
  await Promise.all(
    buffers.map((buffer, rank) =>
      ringAllReduce(buffer, rank, worldSize, links[rank]!, chunkElems).catch((error: unknown) => {
        for (const inbox of inboxes) inbox.fail(error as Error);
        throw error;
      }),
    ),
  );
  return buffers;
}

function expectSumAndIdentical(inputs: Float32Array[], outputs: Float32Array[]): void {
  const length = inputs[0]!.length;
  for (let i = 0; i < length; i++) {
    let exact = 0;
    let magnitude = 0;
    for (const input of inputs) {
      exact += input[i]!;
      magnitude += Math.abs(input[i]!);
    }
    expect(Math.abs(outputs[0]![i]! - exact)).toBeLessThanOrEqual(magnitude * inputs.length * 2 ** -23 + 1e-30);
  }
  const reference = Buffer.from(outputs[0]!.buffer, outputs[0]!.byteOffset, outputs[0]!.byteLength);
  for (const output of outputs.slice(1)) {
    expect(Buffer.from(output.buffer, output.byteOffset, output.byteLength).equals(reference)).toBe(true);
  }
}

describe('segmentBounds', () => {
  it('covers [0, L) contiguously with sizes differing by at most one', () => {
    for (const [length, worldSize] of [
      [0, 3],
      [1, 4],
      [7, 3],
      [12, 4],
      [5, 8],
      [1000, 7],
    ] as const) {
      const bounds = segmentBounds(length, worldSize);
      expect(bounds).toHaveLength(worldSize);
      expect(bounds[0]!.start).toBe(0);
      expect(bounds[worldSize - 1]!.end).toBe(length);
      for (let s = 1; s < worldSize; s++) expect(bounds[s]!.start).toBe(bounds[s - 1]!.end);
      const sizes = bounds.map((b) => b.end - b.start);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it('reports the nominal bytes per rank', () => {
    expect(allReduceBytesPerRank(1000, 1)).toBe(0);
    expect(allReduceBytesPerRank(1000, 2)).toBe(4000);
    expect(allReduceBytesPerRank(1000, 4)).toBe(6000);
  });
});

describe('pipelineChunkElems', () => {
  it('keeps allreduce.chunkBytes until a segment would hold more than MAX_CHUNKS_PER_SEGMENT chunks', () => {
    const chunk = (256 * 1024) / 4;
    // 1 MiB at N = 2: segments of 128 Ki floats, 2 chunks each.
    expect(pipelineChunkElems(256 * 1024, 2, chunk)).toBe(chunk);
    // 64 MiB at N = 2: segments of 8 Mi floats in 8 chunks of 1 Mi floats (4 MiB).
    expect(pipelineChunkElems(16 * 1024 * 1024, 2, chunk)).toBe((16 * 1024 * 1024) / 2 / MAX_CHUNKS_PER_SEGMENT);
    // 256 MiB at N = 2: capped at MAX_CHUNK_ELEMS (8 MiB frames).
    expect(pipelineChunkElems(64 * 1024 * 1024, 2, chunk)).toBe(MAX_CHUNK_ELEMS);
    // A configured chunk larger than the rule's is kept.
    expect(pipelineChunkElems(16 * 1024 * 1024, 2, 4 * MAX_CHUNK_ELEMS)).toBe(4 * MAX_CHUNK_ELEMS);
  });
});

describe('ringAllReduce', () => {
  it('sums across N = 1..8 ranks, bit-identically on every rank, for awkward lengths and chunk sizes', async () => {
    const random = makeRandom(42);
    for (let worldSize = 1; worldSize <= 8; worldSize++) {
      const lengths = [
        0,
        1,
        worldSize - 1,
        worldSize,
        worldSize + 1,
        3 * worldSize + 2,
        97,
        1 + Math.floor(random() * 600),
      ];
      for (const length of lengths) {
        for (const chunkElems of [1, 3, 16, 1024]) {
          const inputs = randomBuffers(worldSize, length, random);
          const outputs = await runRing(inputs, chunkElems, random);
          expectSumAndIdentical(inputs, outputs);
        }
      }
    }
  });

  it('receives all-gather chunks straight into the buffer where the link places them', async () => {
    const random = makeRandom(7);
    for (let worldSize = 2; worldSize <= 5; worldSize++) {
      for (const [length, chunkElems] of [
        [worldSize * 40 + 3, 7],
        [1000, 1024],
        [worldSize - 1, 1],
      ] as const) {
        const inputs = randomBuffers(worldSize, length, random);
        expectSumAndIdentical(inputs, await runRing(inputs, chunkElems, random, true));
      }
    }
  });

  it('gives the same bits whatever the chunk length, so larger pipelined chunks change no result', async () => {
    const random = makeRandom(77);
    for (const worldSize of [2, 3, 4]) {
      const inputs = randomBuffers(worldSize, 4099, random);
      const reference = await runRing(inputs, 7, random, true);
      for (const chunkElems of [64, 513, pipelineChunkElems(4099, worldSize, 16), 5000]) {
        const outputs = await runRing(inputs, chunkElems, random, true);
        for (let rank = 0; rank < worldSize; rank++)
          expect(Buffer.from(outputs[rank]!.buffer).equals(Buffer.from(reference[rank]!.buffer))).toBe(true);
      }
    }
  });

  it('is a no-op for a single rank', async () => {
    const buffer = Float32Array.of(1.5, -2, 3);
    const link: RingLink = {
      send: () => Promise.reject(new Error('must not send')),
      receive: () => Promise.reject(new Error('must not receive')),
    };
    await ringAllReduce(buffer, 0, 1, link, 2);
    expect([...buffer]).toEqual([1.5, -2, 3]);
  });

  it('sums exactly representable values exactly', async () => {
    const inputs = [0, 1, 2, 3].map((rank) => Float32Array.from({ length: 10 }, (_, i) => rank * 100 + i));
    const outputs = await runRing(inputs, 3, makeRandom(7));
    expect([...outputs[2]!]).toEqual(Array.from({ length: 10 }, (_, i) => 600 + 4 * i));
  });

  it('rejects with CollectiveError when ranks disagree on the buffer length', async () => {
    const random = makeRandom(3);
    const inputs = [new Float32Array(10), new Float32Array(11), new Float32Array(10)];
    await expect(runRing(inputs, 4, random)).rejects.toBeInstanceOf(CollectiveError);
  });

  it('rejects invalid ring positions', async () => {
    const { links } = memoryRing(2, makeRandom(1));
    await expect(ringAllReduce(new Float32Array(4), 2, 2, links[0]!, 4)).rejects.toBeInstanceOf(CollectiveError);
    await expect(ringAllReduce(new Float32Array(4), 0, 2, links[0]!, 0)).rejects.toBeInstanceOf(CollectiveError);
  });
});

describe('FrameInbox', () => {
  const key = (round: number, chunk = 0, step = 1, collective = 0) => ({ step, collective, round, chunk });

  it('meets deliver and take in either order', async () => {
    const inbox = new FrameInbox(3);
    inbox.deliver(key(0), Float32Array.of(1));
    const waiting = inbox.take(key(1));
    inbox.deliver(key(1), Float32Array.of(2));
    expect([...(await inbox.take(key(0)))]).toEqual([1]);
    expect([...(await waiting)]).toEqual([2]);
    expect(inbox.heldCount).toBe(0);
  });

  it('refuses a second untaken payload for the same key', () => {
    const inbox = new FrameInbox(0);
    inbox.deliver(key(0), Float32Array.of(1));
    expect(() => inbox.deliver(key(0), Float32Array.of(2))).toThrow(CollectiveError);
  });

  it('rejects pending and future takes after fail, and drops later deliveries', async () => {
    const inbox = new FrameInbox(0);
    const pending = inbox.take(key(0));
    const error = new CollectiveError('left neighbour rank 0 went away');
    inbox.fail(error);
    await expect(pending).rejects.toBe(error);
    await expect(inbox.take(key(1))).rejects.toBe(error);
    inbox.deliver(key(2), Float32Array.of(1));
    expect(inbox.heldCount).toBe(0);
  });

  it('times out a take with a CollectiveError naming round, chunk and sender', async () => {
    const inbox = new FrameInbox(5);
    const error = await inbox.take(key(4, 2), 10).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/round 4 chunk 2 from rank 5/);
  });

  it('treats frames of an earlier collective as stale', () => {
    const inbox = new FrameInbox(1);
    inbox.openCollective(2, 1);
    expect(() => inbox.deliver(key(0, 0, 2, 0), Float32Array.of(1))).toThrow(/stale/);
    expect(() => inbox.deliver(key(0, 0, 1, 5), Float32Array.of(1))).toThrow(/stale/);
    inbox.deliver(key(0, 0, 3, 0), Float32Array.of(1));
    expect(inbox.heldCount).toBe(1);
  });

  it('fails when a new collective opens while an older payload is still unconsumed', async () => {
    const inbox = new FrameInbox(1);
    inbox.openCollective(1, 0);
    inbox.deliver(key(3, 0, 1, 0), Float32Array.of(1));
    expect(() => inbox.openCollective(2, 0)).toThrow(CollectiveError);
    await expect(inbox.take(key(0, 0, 2, 0))).rejects.toBeInstanceOf(CollectiveError);
  });
});

describe('FrameInbox placements', () => {
  it('hands a placement out once, and drops placements on a new collective or a failure', () => {
    const key = (round: number, chunk: number, step: number, collective: number) => ({
      step,
      collective,
      round,
      chunk,
    });
    const inbox = new FrameInbox(1);
    inbox.openCollective(1, 0);
    const target = new Float32Array(4);
    inbox.place(key(1, 0, 1, 0), { offset: 8, target });
    expect(inbox.claimPlacement(key(1, 0, 1, 0))).toEqual({ offset: 8, target });
    expect(inbox.claimPlacement(key(1, 0, 1, 0))).toBeUndefined();
    inbox.place(key(1, 0, 1, 0), { offset: 8, target });
    inbox.openCollective(1, 1);
    expect(inbox.claimPlacement(key(1, 0, 1, 0))).toBeUndefined();
    inbox.place(key(1, 0, 1, 1), { offset: 8, target });
    inbox.clearPlacements();
    expect(inbox.claimPlacement(key(1, 0, 1, 1))).toBeUndefined();
    inbox.place(key(1, 0, 1, 1), { offset: 8, target });
    inbox.fail(new CollectiveError('gone'));
    expect(inbox.claimPlacement(key(1, 0, 1, 1))).toBeUndefined();
  });
});

describe('float codec', () => {
  it('round-trips through bytes and never aliases the source', () => {
    const values = Float32Array.of(0, -0, 1.5, -3.25e-20, Infinity, NaN, 3.4e38);
    const bytes = encodeFloat32LE(values);
    values[0] = 99;
    const decoded = decodeFloat32LE(bytes);
    expect(decoded[0]).toBe(0);
    expect(Buffer.from(decoded.buffer, decoded.byteOffset, decoded.byteLength).equals(bytes)).toBe(true);
    expect(bytes.readFloatLE(8)).toBe(1.5);
  });

  it('decodes from an unaligned byte offset into an aligned array', () => {
    const backing = Buffer.alloc(4 * 3 + 1);
    backing.writeFloatLE(1.25, 1);
    backing.writeFloatLE(-7, 5);
    backing.writeFloatLE(1e-3, 9);
    const decoded = decodeFloat32LE(backing.subarray(1));
    expect(decoded.byteOffset % 4).toBe(0);
    expect([...decoded]).toEqual([1.25, -7, Math.fround(1e-3)]);
  });
});
