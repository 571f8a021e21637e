// Ring all-reduce over the raw-TCP transport on 127.0.0.1:0: N TcpRingServers +
// TcpRingCommunicators in this process, plus raw sockets to speak the wire protocol out of turn.
// Covers the ring and the latency path, wire compression, the wait for peers each collective
// reports, and the worker's RingEndpoint.
import * as net from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CollectiveError } from '../../shared/errors.js';
import {
  controlFrame,
  emptyHeader,
  FRAME_HEADER_BYTES,
  FrameKind,
  writeHeader,
  type FrameHeader,
} from '../../worker/transport/frame.js';
import { FrameReader } from '../../worker/transport/frame-reader.js';
import type { CollectiveStats } from '../../worker/collectives/collective-stats.js';
import type { FrameInbox } from '../../worker/collectives/frame-inbox.js';
import type { RingCollective } from '../../worker/collectives/ring-collective.js';
import { RingEndpoint } from '../../worker/transport/ring-endpoint.js';
import { TcpRingCommunicator, TcpRingServer } from '../../worker/transport/ring-communicator.js';
import { RELATIVE_CAST_ERROR, type WireCodec } from '../../worker/collectives/wire-compression.js';
import { reducerFor, reducibleFloat32Array } from '../../worker/collectives/simd-add.js';

const logger = pino({ level: 'silent' });
const TIMEOUT_MS = 30_000;

interface Ring {
  servers: TcpRingServer[];
  comms: TcpRingCommunicator[];
}

interface RingOptions {
  generation?: number;
  compression?: WireCodec;
  smallBufferBytes?: number;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startServer(): Promise<TcpRingServer> {
  const server = await TcpRingServer.start({ host: '127.0.0.1', port: 0, logger });
  cleanups.push(() => server.close());
  return server;
}

async function startRing(worldSize: number, chunkBytes: number, options: RingOptions = {}): Promise<Ring> {
  const servers = await Promise.all(Array.from({ length: worldSize }, () => startServer()));
  const comms = await Promise.all(
    servers.map((server, rank) =>
      TcpRingCommunicator.connect({
        server,
        rank,
        worldSize,
        generation: options.generation ?? 1,
        leftAddress: `127.0.0.1:${servers[(rank - 1 + worldSize) % worldSize]!.port}`,
        chunkBytes,
        collectiveTimeoutMs: TIMEOUT_MS,
        smallBufferBytes: options.smallBufferBytes ?? 256,
        ...(options.compression ? { compression: options.compression } : {}),
        logger,
      }),
    ),
  );
  for (const comm of comms) cleanups.push(() => comm.close());
  return { servers, comms };
}

function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function randomBuffers(worldSize: number, length: number, random: () => number, scale = 1): Float32Array[] {
  return Array.from({ length: worldSize }, () => Float32Array.from({ length }, () => (random() * 4 - 2) * scale));
}

/** The bytes of a view (not of its whole ArrayBuffer: a reducible buffer shares its memory with a window). */
function bytesOf(view: Float32Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * All-reduces copies of `inputs` on every rank; checks the sum within `relative`·Σ|x| and
 * bit-identity. `reducible`: the copies live in WebAssembly memories with a receive window (as a
 * worker's gradient does), so reduce-scatter chunks are summed in place.
 */
async function allReduceAndCheck(
  comms: Array<Pick<RingCollective, 'allReduce'>>,
  inputs: Float32Array[],
  step: number,
  collective = 0,
  relative = 0,
  reducible = false,
): Promise<void> {
  const buffers = inputs.map((input) => {
    if (!reducible) return input.slice();
    const copy = reducibleFloat32Array(input.length);
    copy.set(input);
    return copy;
  });
  await Promise.all(comms.map((comm, rank) => comm.allReduce(buffers[rank]!, step, collective)));
  const n = inputs.length;
  for (let i = 0; i < inputs[0]!.length; i++) {
    let exact = 0;
    let magnitude = 0;
    for (const input of inputs) {
      exact += input[i]!;
      magnitude += Math.abs(input[i]!);
    }
    const tolerance = n * 2 * n * 2 ** -23 + relative * magnitude;
    if (Math.abs(buffers[0]![i]! - exact) > tolerance) expect.fail(`element ${i}: ${buffers[0]![i]} != ${exact}`);
  }
  const reference = bytesOf(buffers[0]!);
  for (const buffer of buffers.slice(1)) expect(bytesOf(buffer).equals(reference)).toBe(true);
}

/** A raw TCP connection to `port`; `refusal` resolves with the reason of a REFUSE frame (or '' when closed without one). */
function rawPeer(port: number): { socket: net.Socket; refusal: Promise<string> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  cleanups.push(() => {
    socket.destroy();
    return Promise.resolve();
  });
  const refusal = new Promise<string>((resolve) => {
    const reader = new FrameReader({
      payloadTarget: (header) => new Uint8Array(header.payloadBytes),
      frame: (header, payload) =>
        resolve(header.kind === FrameKind.refuse ? Buffer.from(payload).toString('utf8') : `kind ${header.kind}`),
    });
    socket.on('data', (bytes: Buffer) => reader.push(bytes));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(''));
  });
  return { socket, refusal };
}

function dataFrame(
  generation: number,
  senderRank: number,
  values: Float32Array,
  overrides: Partial<FrameHeader> = {},
): Buffer {
  const payload = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const header: FrameHeader = {
    ...emptyHeader(),
    kind: FrameKind.data,
    generation,
    senderRank,
    step: 1,
    length: values.length,
    payloadBytes: payload.byteLength,
    ...overrides,
  };
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + payload.byteLength);
  writeHeader(frame, header);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

describe('ring all-reduce over raw TCP', () => {
  it('sums across N = 1..6 on both paths, step after step, bit-identically', async () => {
    const random = makeRandom(11);
    for (let worldSize = 1; worldSize <= 6; worldSize++) {
      const ring = await startRing(worldSize, 1024);
      // 0, < N, 1 and 40 floats take the latency path (≤ 256 bytes here); the rest the ring.
      const lengths = [0, Math.max(0, worldSize - 1), 1, 40, 1000 + Math.floor(random() * 3000), 257 * worldSize + 3];
      for (const [index, length] of lengths.entries()) {
        await allReduceAndCheck(ring.comms, randomBuffers(worldSize, length, random), index + 1);
      }
      await allReduceAndCheck(ring.comms, randomBuffers(worldSize, 33, random), lengths.length, 1);
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    }
  });

  it('sums in place in buffers with a receive window (as a gradient in its arena) bit-identically to plain buffers', async () => {
    expect(reducerFor(reducibleFloat32Array(4))).toBeDefined();
    const random = makeRandom(17);
    for (const worldSize of [2, 3, 5]) {
      // Chunks of 1 KiB and 200 KiB: payloads shorter and longer than the 128 KiB window, odd tails.
      for (const chunkBytes of [1024, 200 * 1024]) {
        const ring = await startRing(worldSize, chunkBytes);
        for (const [step, length] of [70_001, 250_000 * worldSize + 13].entries()) {
          const inputs = randomBuffers(worldSize, length, random);
          await allReduceAndCheck(ring.comms, inputs, 2 * step + 1, 0, 0, true);
          // The same inputs in plain buffers (summed through the scratch window) give the same bits.
          const plain = inputs.map((input) => input.slice());
          await Promise.all(ring.comms.map((comm, rank) => comm.allReduce(plain[rank]!, 2 * step + 2)));
          const windowed = inputs.map((input) => {
            const copy = reducibleFloat32Array(input.length);
            copy.set(input);
            return copy;
          });
          await Promise.all(ring.comms.map((comm, rank) => comm.allReduce(windowed[rank]!, 2 * step + 2, 1)));
          for (let rank = 0; rank < worldSize; rank++)
            expect(bytesOf(windowed[rank]!).equals(bytesOf(plain[rank]!))).toBe(true);
        }
        for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
      }
    }
  });

  it('carries a 12 MiB buffer in 8 MiB chunks, and pipelines 5.6 MiB in default-size chunks over three ranks', async () => {
    // Inputs are made before the rings start: making them blocks the event loop (for seconds on a
    // busy machine), and a data port drops a connection whose handshake it has not read in 10 s.
    const random = makeRandom(5);
    const pairInputs = [randomBuffers(2, 3 * 1024 * 1024, random), randomBuffers(2, 3 * 1024 * 1024, random)];
    const threeInputs = randomBuffers(3, 1_400_000, random);
    const pair = await startRing(2, 8 * 1024 * 1024);
    await allReduceAndCheck(pair.comms, pairInputs[0]!, 1);
    await allReduceAndCheck(pair.comms, pairInputs[1]!, 2);
    const three = await startRing(3, 256 * 1024);
    await allReduceAndCheck(three.comms, threeInputs, 7);
  });

  it('returns only once its chunks are sent: a rank that overwrites its buffer at once leaves the others exact', async () => {
    // Chunks leave as views of the caller's buffer, so an early return would ship the NaNs.
    const random = makeRandom(13);
    // Made before the ring starts (see the test above).
    const inputsOfStep = [1, 2, 3].map((step) => randomBuffers(3, 2_000_000 + step, random));
    const ring = await startRing(3, 64 * 1024);
    for (let step = 1; step <= 3; step++) {
      const inputs = inputsOfStep[step - 1]!;
      const buffers = inputs.map((input) => input.slice());
      const results: Float32Array[] = [];
      await Promise.all(
        ring.comms.map(async (comm, rank) => {
          await comm.allReduce(buffers[rank]!, step);
          results[rank] = buffers[rank]!.slice();
          buffers[rank]!.fill(Number.NaN);
        }),
      );
      for (let i = 0; i < inputs[0]!.length; i++) {
        const exact = inputs[0]![i]! + inputs[1]![i]! + inputs[2]![i]!;
        if (!(Math.abs(results[0]![i]! - exact) <= 1e-5)) expect.fail(`step ${step} element ${i}: ${results[0]![i]}`);
      }
      const reference = Buffer.from(results[0]!.buffer);
      for (const result of results.slice(1)) expect(Buffer.from(result.buffer).equals(reference)).toBe(true);
    }
  });

  it('takes the latency path below the default 64 KiB threshold with the same result on every rank', async () => {
    const ring = await startRing(4, 1024, { smallBufferBytes: 64 * 1024 });
    const random = makeRandom(8);
    await allReduceAndCheck(ring.comms, randomBuffers(4, 16 * 1024, random), 1);
    await allReduceAndCheck(ring.comms, randomBuffers(4, 16 * 1024 + 1, random), 2);
  });

  it('fails a collective whose buffer lengths differ across ranks instead of hanging', async () => {
    const ring = await startRing(3, 1024);
    const lengths = [5000, 5000, 5001];
    const outcomes = await Promise.all(
      ring.comms.map((comm, rank) => comm.allReduce(new Float32Array(lengths[rank]!), 1).catch((e: unknown) => e)),
    );
    for (const outcome of outcomes) expect(outcome).toBeInstanceOf(CollectiveError);
  });
});

/** Whether the left neighbour's first frame of collective (step, 0) has reached `comm` (its inbox is private: peeked at). */
function hasArrival(comm: TcpRingCommunicator, step: number): boolean {
  return (comm as unknown as { inbox: FrameInbox }).inbox.firstArrivalMs(step, 0) !== undefined;
}

/** Resolves once `condition` holds; polls, bounded by TIMEOUT_MS. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (const deadline = performance.now() + TIMEOUT_MS; !condition();) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Every rank all-reduces `length` floats at `step`, rank `late` last: the others start first (its
 * right neighbour first of all), and `late` only once every rank not fed by it holds its left
 * neighbour's first frame, and `delayMs` after that. Returns each rank's reported wait and
 * `lateByMs`, how long after its right neighbour entered the collective `late` did.
 */
async function waitsWithLateRank(ring: Ring, length: number, step: number, late: number, delayMs: number) {
  const worldSize = ring.comms.length;
  const right = (late + 1) % worldSize;
  const early = [right, ...ring.comms.keys()].filter((rank, i, all) => rank !== late && all.indexOf(rank) === i);
  const results = new Array<Promise<CollectiveStats>>(worldSize);
  const allReduce = (rank: number) => ring.comms[rank]!.allReduce(new Float32Array(length).fill(rank), step);
  const rightStartedMs = performance.now();
  for (const rank of early) results[rank] = allReduce(rank);
  await until(
    () => ring.comms.every((comm, rank) => rank === right || hasArrival(comm, step)),
    'the first frames from the ranks that started',
  );
  await new Promise((resolve) => setTimeout(resolve, delayMs));
  const lateStartedMs = performance.now();
  results[late] = allReduce(late);
  const waits = (await Promise.all(results)).map((stats) => stats.waitMs);
  return { waits, lateByMs: lateStartedMs - rightStartedMs };
}

describe('wait for peers', () => {
  // Decided by causality, not by a machine's speed: the late rank's first frame leaves after it
  // starts, so its right neighbour waits at least as long as it was late; every other rank's
  // first frame was in before the late rank started, so none of them waits as long, and the
  // late rank, whose frame was already there, waits not at all.
  it.each([
    ['ring', 50_000],
    ['latency', 40],
  ])(
    '%s path: a rank whose left neighbour starts 200 ms late reports that wait, the others less, the late one none',
    async (_, length) => {
      const pair = await startRing(2, 4096);
      const two = await waitsWithLateRank(pair, length, 1, 1, 200);
      expect(two.waits[0]).toBeGreaterThanOrEqual(two.lateByMs);
      expect(two.waits[1]).toBe(0);
      // Only the left neighbour counts: in 0 -> 1 -> 2 -> 0, a late rank 2 keeps rank 0 waiting.
      const three = await startRing(3, 4096);
      const { waits, lateByMs } = await waitsWithLateRank(three, length, 1, 2, 200);
      expect(waits[0]).toBeGreaterThanOrEqual(lateByMs);
      expect(waits[1]).toBeLessThan(waits[0]!);
      expect(waits[2]).toBe(0);
    },
  );

  it('reports no wait at world size 1', async () => {
    const [solo] = (await startRing(1, 4096)).comms;
    expect(await solo!.allReduce(new Float32Array(8), 1)).toEqual({ waitMs: 0 });
  });
});

describe.each(['fp16', 'bf16'] as const)('%s wire compression', (codec) => {
  it('stays within the cast error and leaves every rank bit-identical', async () => {
    const random = makeRandom(codec === 'fp16' ? 21 : 22);
    for (const worldSize of [2, 3, 5]) {
      const ring = await startRing(worldSize, 4096, { compression: codec });
      // One cast per reduce-scatter hop plus one for the all-gather, each relative to a chunk maximum.
      const relative = (worldSize + 1) * RELATIVE_CAST_ERROR[codec] * 4;
      await allReduceAndCheck(ring.comms, randomBuffers(worldSize, 20_000, random), 1, 0, relative);
      // Magnitudes far above fp16's 65504 do not overflow: the per-chunk scale brings them down.
      await allReduceAndCheck(ring.comms, randomBuffers(worldSize, 9_999, random, 1e9), 2, 0, relative);
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    }
  });
});

describe('data port', () => {
  it('a RingEndpoint joins generation after generation over one listener', async () => {
    const endpoints = await Promise.all(
      [0, 1, 2].map(() => RingEndpoint.start({ host: '127.0.0.1', port: 0, logger })),
    );
    for (const endpoint of endpoints) cleanups.push(() => endpoint.close());
    for (const generation of [1, 2]) {
      const comms = await Promise.all(
        endpoints.map((endpoint, rank) =>
          endpoint.connect(
            {
              rank,
              worldSize: 3,
              generation,
              leftAddress: `127.0.0.1:${endpoints[(rank + 2) % 3]!.port}`,
              rightAddress: `127.0.0.1:${endpoints[(rank + 1) % 3]!.port}`,
            },
            { chunkBytes: 4096, transport: 'tcp', compression: 'none' },
            TIMEOUT_MS,
            logger,
          ),
        ),
      );
      await allReduceAndCheck(comms, randomBuffers(3, 50_000, makeRandom(4)), 1);
      await Promise.all(comms.map((comm) => comm.close()));
    }
  });
});

describe('tcp ring failures', () => {
  async function stalledRing(): Promise<{ ring: Ring; pending: Array<Promise<unknown>> }> {
    const ring = await startRing(4, 1024);
    await allReduceAndCheck(ring.comms, randomBuffers(4, 5000, makeRandom(3)), 1);
    const pending = [0, 1, 3].map((rank) =>
      ring.comms[rank]!.allReduce(new Float32Array(5000).fill(rank), 2).then(
        () => 'resolved',
        (error: unknown) => error,
      ),
    );
    return { ring, pending };
  }

  function expectNeighbourFailure(outcome: unknown, rank: number): void {
    expect(outcome).toBeInstanceOf(CollectiveError);
    const message = (outcome as Error).message;
    expect(message).not.toMatch(/timed out|within \d+ ms/);
    const neighbours = [(rank + 3) % 4, (rank + 1) % 4];
    expect(neighbours.some((neighbour) => message.includes(`rank ${neighbour}`))).toBe(true);
  }

  it('rejects every waiting rank promptly when one rank closes its communicator and server', async () => {
    const { ring, pending } = await stalledRing();
    await Promise.all([ring.comms[2]!.close(), ring.servers[2]!.close()]);
    const [rank0, rank1, rank3] = await Promise.all(pending);
    expectNeighbourFailure(rank0, 0);
    expectNeighbourFailure(rank1, 1);
    expectNeighbourFailure(rank3, 3);
    expect([rank1, rank3].some((error) => (error as Error).message.includes('rank 2'))).toBe(true);
    await expect(ring.comms[0]!.allReduce(new Float32Array(10), 3)).rejects.toBeInstanceOf(CollectiveError);
  });

  it("rejects the right neighbour's collective when a rank's data port goes away (it receives from there)", async () => {
    const { ring, pending } = await stalledRing();
    await ring.servers[2]!.close();
    const [rank0, rank1, rank3] = await Promise.all(pending);
    expectNeighbourFailure(rank3, 3);
    expect((rank3 as Error).message).toMatch(/left neighbour rank 2 closed/);
    // The abort runs on around the ring: nobody waits out a timeout.
    expectNeighbourFailure(rank0, 0);
    expectNeighbourFailure(rank1, 1);
  });

  it('rejects collectives on a closed communicator, on its right neighbour, and out of order', async () => {
    const ring = await startRing(2, 1024);
    await allReduceAndCheck(ring.comms, randomBuffers(2, 100, makeRandom(1)), 4);
    await expect(ring.comms[0]!.allReduce(new Float32Array(100), 4)).rejects.toThrow(/does not follow step 4/);
    await expect(ring.comms[0]!.allReduce(new Float32Array(100), 3, 9)).rejects.toBeInstanceOf(CollectiveError);
    await ring.comms[0]!.close();
    await expect(ring.comms[0]!.allReduce(new Float32Array(100), 5)).rejects.toThrow(/closed/);
    const error = await ring.comms[1]!.allReduce(new Float32Array(100), 5).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/rank 0/);
  });
});

describe('tcp ring protocol checks', () => {
  /**
   * Plays rank 1 of a two-rank ring around a real rank 0: listens as rank 0's left neighbour
   * (rank 0 dials it to receive) and dials rank 0's data port as its right neighbour.
   * `toComm` is the connection on which frames for rank 0 are written.
   */
  async function fakeNeighbour(
    commServer: TcpRingServer,
    generation: number,
  ): Promise<{ leftAddress: string; toComm: Promise<net.Socket>; fromComm: net.Socket }> {
    const listener = net.createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const toComm = new Promise<net.Socket>((resolve) =>
      listener.once('connection', (socket) => {
        socket.on('error', () => undefined);
        resolve(socket);
      }),
    );
    const fromComm = net.connect({ host: '127.0.0.1', port: commServer.port });
    fromComm.on('error', () => undefined);
    fromComm.resume();
    fromComm.write(controlFrame(FrameKind.handshake, generation, 1));
    cleanups.push(async () => {
      fromComm.destroy();
      (await toComm).destroy();
      listener.close();
    });
    return { leftAddress: `127.0.0.1:${(listener.address() as net.AddressInfo).port}`, toComm, fromComm };
  }

  async function commWithFakeNeighbour(
    generation: number,
  ): Promise<{ comm: TcpRingCommunicator; toComm: net.Socket; fromComm: net.Socket }> {
    const server = await startServer();
    const fake = await fakeNeighbour(server, generation);
    const comm = await TcpRingCommunicator.connect({
      server,
      rank: 0,
      worldSize: 2,
      generation,
      leftAddress: fake.leftAddress,
      chunkBytes: 1024,
      collectiveTimeoutMs: TIMEOUT_MS,
      smallBufferBytes: 0,
      logger,
    });
    cleanups.push(() => comm.close());
    return { comm, toComm: await fake.toComm, fromComm: fake.fromComm };
  }

  it('refuses a handshake from a stale generation, saying why', async () => {
    const server = await startServer();
    server.expect(5, 0);
    const { socket, refusal } = rawPeer(server.port);
    socket.write(controlFrame(FrameKind.handshake, 4, 0));
    expect(await refusal).toMatch(/stale generation 4/);
  });

  it('fails the collective on a DATA frame from a stale generation', async () => {
    const { comm, toComm } = await commWithFakeNeighbour(5);
    const pending = comm.allReduce(new Float32Array(16), 1).catch((e: unknown) => e);
    toComm.write(dataFrame(4, 1, Float32Array.of(1, 2)));
    const error = await pending;
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/left neighbour rank 1 refused: generation 4, expected 5/);
  });

  it('fails the collective on an all-gather frame for another region than the one it is read into', async () => {
    const { comm, toComm, fromComm } = await commWithFakeNeighbour(1);
    // Rank 0 of 2 with 16 floats receives [0, 8) in the all-gather round 1, straight into its buffer.
    const sending = new Promise((resolve) => fromComm.once('data', resolve));
    const pending = comm.allReduce(new Float32Array(16), 1).catch((e: unknown) => e);
    await sending; // the collective has placed its all-gather chunks
    toComm.write(dataFrame(1, 1, new Float32Array(8), { round: 1, offset: 4 }));
    const error = await pending;
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(
      /round 1 chunk 0 from left neighbour rank 1 covers elements \[4, 12\), this rank expects \[0, 8\)/,
    );
  });

  it('fails the collective on a frame whose length does not match its payload, or a stream out of sync', async () => {
    const first = await commWithFakeNeighbour(1);
    const pending = first.comm.allReduce(new Float32Array(16), 1).catch((e: unknown) => e);
    first.toComm.write(dataFrame(1, 1, Float32Array.of(1, 2), { length: 3 }));
    expect(await pending).toBeInstanceOf(CollectiveError);
    await expect(first.comm.allReduce(new Float32Array(16), 2)).rejects.toThrow(
      /length 3 floats but payload of 8 bytes/,
    );

    const second = await commWithFakeNeighbour(1);
    const garbled = second.comm.allReduce(new Float32Array(16), 1).catch((e: unknown) => e);
    second.toComm.write(Buffer.from('RTR1 but then nonsense that is long enough to be a frame header......'));
    expect((await garbled) as Error).toMatchObject({
      message: expect.stringMatching(/out of sync|unknown codec/) as unknown,
    });
  });

  it('cuts the attached connection when a new generation begins', async () => {
    const server = await startServer();
    server.expect(1, 0);
    const { socket, refusal } = rawPeer(server.port);
    socket.write(controlFrame(FrameKind.handshake, 1, 0));
    await server.waitForRight(1, TIMEOUT_MS);
    server.expect(2, 0);
    expect(await refusal).toMatch(/superseded by generation 2/);
  });

  it('keeps a handshake that arrived in time although a long synchronous stretch delayed the check', async () => {
    const server = await TcpRingServer.start({ host: '127.0.0.1', port: 0, logger, sniffTimeoutMs: 50 });
    cleanups.push(() => server.close());
    server.expect(1, 0);
    const { socket } = rawPeer(server.port);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 20)); // let the server accept it and arm its check
    socket.write(controlFrame(FrameKind.handshake, 1, 0));
    // A busy thread (a big step) for 4x the sniff limit: the timer is due before the bytes are read.
    const until = performance.now() + 200;
    while (performance.now() < until);
    const attached = await server.waitForRight(1, TIMEOUT_MS);
    expect(attached.remotePort).toBe(socket.localPort);
  });

  it('holds a handshake for a future generation until the server reaches it', async () => {
    const server = await startServer();
    server.expect(1, 0);
    const { socket } = rawPeer(server.port);
    socket.write(controlFrame(FrameKind.handshake, 2, 0));
    await expect(server.waitForRight(1, 200)).rejects.toBeInstanceOf(CollectiveError);
    server.expect(2, 0);
    const attached = await server.waitForRight(2, TIMEOUT_MS);
    expect(attached.remotePort).toBe(socket.localPort);
  });

  it('parks at most maxParked future handshakes, each for parkTimeoutMs, and they hold no seat', async () => {
    const server = await TcpRingServer.start({ host: '127.0.0.1', port: 0, logger, parkTimeoutMs: 2_000 });
    cleanups.push(() => server.close());
    server.expect(1, 0);
    // 72 unauthenticated handshakes for the next generation, as the attack report's.
    const flood = Array.from({ length: 72 }, () => rawPeer(server.port));
    flood.forEach(({ socket }, i) => socket.write(controlFrame(FrameKind.handshake, 2, 1 + (i % 3))));
    const refusals = await Promise.all(flood.slice(0, 56).map((p) => p.refusal));
    expect(refusals.every((r) => /more than 16 handshakes wait for future generations/.test(r))).toBe(true);
    expect(server.parkedCount).toBe(16);
    // The rest wait no longer than parkTimeoutMs for a generation that does not come.
    const expired = await Promise.all(flood.slice(56).map((p) => p.refusal));
    expect(expired.every((r) => /generation 2 did not start within 2000 ms/.test(r))).toBe(true);
    expect(server.parkedCount).toBe(0);
    // Recovery: the legitimate right neighbour of generation 2 attaches.
    server.expect(2, 0);
    const { socket } = rawPeer(server.port);
    socket.write(controlFrame(FrameKind.handshake, 2, 0));
    const attached = await server.waitForRight(2, TIMEOUT_MS);
    expect(attached.remotePort).toBe(socket.localPort);
  });

  it('refuses parked handshakes of other ranks when their generation starts, and the right one attaches', async () => {
    const server = await startServer();
    server.expect(1, 0);
    const squatters = Array.from({ length: 10 }, () => rawPeer(server.port));
    squatters.forEach(({ socket }, i) => socket.write(controlFrame(FrameKind.handshake, 2, 1 + (i % 5))));
    for (let i = 0; i < 1_000 && server.parkedCount < 10; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.parkedCount).toBe(10);
    server.expect(2, 0);
    const refusals = await Promise.all(squatters.map((p) => p.refusal));
    expect(refusals.every((r) => /is not the right neighbour/.test(r))).toBe(true);
    const { socket } = rawPeer(server.port);
    socket.write(controlFrame(FrameKind.handshake, 2, 0));
    const attached = await server.waitForRight(2, TIMEOUT_MS);
    expect(attached.remotePort).toBe(socket.localPort);
  });

  it('fails the collective of a communicator whose generation the neighbour has left behind', async () => {
    const [own, left] = [await startServer(), await startServer()];
    left.expect(2, 0);
    const comm = await TcpRingCommunicator.connect({
      server: own,
      rank: 0,
      worldSize: 2,
      generation: 1,
      leftAddress: `127.0.0.1:${left.port}`,
      chunkBytes: 1024,
      collectiveTimeoutMs: TIMEOUT_MS,
      logger,
    });
    cleanups.push(() => comm.close());
    const error = await comm.allReduce(new Float32Array(16), 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/rank 1.*stale generation 1/);
  });

  it('reports a taken port as PortInUseError and drops foreign protocols without a handler', async () => {
    const server = await startServer();
    await expect(TcpRingServer.start({ host: '127.0.0.1', port: server.port, logger })).rejects.toMatchObject({
      name: 'PortInUseError',
    });
    const { socket, refusal } = rawPeer(server.port);
    socket.write('GET / HTTP/1.1\r\n\r\n');
    expect(await refusal).toBe('');
  });

  it('drops a peer that sends fewer than four bytes and closes, and keeps serving (found by the fuzz test)', async () => {
    const server = await startServer();
    server.expect(1, 0);
    for (const bytes of [[0x52], [0x52, 0x54, 0x52]]) {
      const { socket, refusal } = rawPeer(server.port);
      socket.end(Buffer.from(bytes));
      expect(await refusal).toBe('');
    }
    const { socket } = rawPeer(server.port);
    socket.write(controlFrame(FrameKind.handshake, 1, 0));
    const attached = await server.waitForRight(1, TIMEOUT_MS);
    expect(attached.remotePort).toBe(socket.localPort);
  });
});
