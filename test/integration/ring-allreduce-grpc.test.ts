// Ring all-reduce over real gRPC on 127.0.0.1:0: N RingDataServers + RingCommunicators in
// this process, plus a raw RingPeer client to speak the wire protocol out of turn.
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Frame } from '../../proto/generated/ringtrain/v1/Frame.js';
import { CollectiveError } from '../../shared/errors.js';
import { loadProto } from '../../shared/proto.js';
import { encodeFloat32LE } from '../../worker/float-codec.js';
import { RingCommunicator, RingDataServer } from '../../worker/ring-transport.js';

const logger = pino({ level: 'silent' });
const TIMEOUT_MS = 30_000;

interface Ring {
  servers: RingDataServer[];
  comms: RingCommunicator[];
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startServer(): Promise<RingDataServer> {
  const server = await RingDataServer.start({ host: '127.0.0.1', port: 0, logger });
  cleanups.push(() => server.close());
  return server;
}

async function startRing(worldSize: number, chunkBytes: number, generation = 1): Promise<Ring> {
  const servers = await Promise.all(Array.from({ length: worldSize }, () => startServer()));
  const comms = await Promise.all(
    servers.map((server, rank) =>
      RingCommunicator.connect({
        server,
        rank,
        worldSize,
        generation,
        rightAddress: `127.0.0.1:${servers[(rank + 1) % worldSize]!.port}`,
        chunkBytes,
        collectiveTimeoutMs: TIMEOUT_MS,
        logger,
      }),
    ),
  );
  for (const comm of comms) cleanups.push(() => comm.close());
  if (worldSize > 1) await Promise.all(servers.map((server) => server.waitForLeft(TIMEOUT_MS)));
  return { servers, comms };
}

function makeRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function randomBuffers(worldSize: number, length: number, random: () => number): Float32Array[] {
  return Array.from({ length: worldSize }, () => Float32Array.from({ length }, () => random() * 4 - 2));
}

/** All-reduces copies of `inputs` on every rank and checks the sum and bit-identity. */
async function allReduceAndCheck(ring: Ring, inputs: Float32Array[], step: number, collective = 0): Promise<void> {
  const buffers = inputs.map((input) => input.slice());
  await Promise.all(ring.comms.map((comm, rank) => comm.allReduce(buffers[rank]!, step, collective)));
  const length = inputs[0]!.length;
  const tolerance = inputs.length * 2 * inputs.length * 2 ** -23;
  for (let i = 0; i < length; i++) {
    let exact = 0;
    for (const input of inputs) exact += input[i]!;
    if (Math.abs(buffers[0]![i]! - exact) > tolerance) expect.fail(`element ${i}: ${buffers[0]![i]} != ${exact}`);
  }
  const reference = Buffer.from(buffers[0]!.buffer);
  for (const buffer of buffers.slice(1)) expect(Buffer.from(buffer.buffer).equals(reference)).toBe(true);
}

describe('wait for peers over gRPC', () => {
  it('a rank whose left neighbour starts 200 ms late reports that wait, the other about none', async () => {
    const ring = await startRing(2, 4096);
    const [early, late] = await Promise.all(
      ring.comms.map(async (comm, rank) => {
        if (rank === 1) await new Promise((resolve) => setTimeout(resolve, 200));
        return (await comm.allReduce(new Float32Array(50_000).fill(rank), 1)).waitMs;
      }),
    );
    expect(early).toBeGreaterThanOrEqual(150);
    expect(late).toBeLessThan(50);
  });
});

/** A raw RingPeer.Push call to `port`; `status` resolves with the call's final status code. */
function rawPush(port: number): { call: grpc.ClientWritableStream<Frame>; status: Promise<grpc.status> } {
  const RingPeer = loadProto().ringtrain.v1.RingPeer;
  const client = new RingPeer(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  let call: grpc.ClientWritableStream<Frame> | undefined;
  const status = new Promise<grpc.status>((resolve) => {
    call = client.Push((error) => resolve(error === null ? grpc.status.OK : error.code));
  });
  cleanups.push(() => {
    call!.cancel();
    client.close();
    return Promise.resolve();
  });
  return { call: call!, status };
}

function dataFrame(
  generation: number,
  senderRank: number,
  values: Float32Array,
  overrides: Partial<Frame> = {},
): Frame {
  return {
    kind: 'DATA',
    generation,
    senderRank,
    step: 1,
    collective: 0,
    round: 0,
    segment: 0,
    chunk: 0,
    offset: 0,
    length: values.length,
    payload: encodeFloat32LE(values),
    ...overrides,
  };
}

describe('ring all-reduce over gRPC', () => {
  it('sums across N = 1..6 over long-lived streams, step after step, bit-identically', async () => {
    const random = makeRandom(11);
    for (let worldSize = 1; worldSize <= 6; worldSize++) {
      const ring = await startRing(worldSize, 1024);
      const lengths = [0, Math.max(0, worldSize - 1), 1, 1000 + Math.floor(random() * 3000), 257 * worldSize + 3];
      for (const [index, length] of lengths.entries()) {
        await allReduceAndCheck(ring, randomBuffers(worldSize, length, random), index + 1);
      }
      // A second collective within the same step uses the same streams.
      await allReduceAndCheck(ring, randomBuffers(worldSize, 33, random), lengths.length, 1);
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    }
  });

  it('carries frames far above gRPC 4 MiB default message limit', async () => {
    const random = makeRandom(5);
    // N = 2, 12 MiB buffer, 8 MiB chunks: every frame carries a 6 MiB segment.
    const ring = await startRing(2, 8 * 1024 * 1024);
    await allReduceAndCheck(ring, randomBuffers(2, 3 * 1024 * 1024, random), 1);
    await allReduceAndCheck(ring, randomBuffers(2, 3 * 1024 * 1024, random), 2);
  });

  it('pipelines a 5.6 MiB buffer in default-size chunks over three ranks', async () => {
    const ring = await startRing(3, 256 * 1024);
    await allReduceAndCheck(ring, randomBuffers(3, 1_400_000, makeRandom(9)), 7);
  });
});

describe('ring failures', () => {
  /** Starts a 4-rank ring, proves it works, then leaves ranks 0, 1, 3 waiting on rank 2. */
  async function stalledRing(): Promise<{ ring: Ring; pending: Array<Promise<unknown>> }> {
    const ring = await startRing(4, 1024);
    const random = makeRandom(3);
    await allReduceAndCheck(ring, randomBuffers(4, 5000, random), 1);
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
    // At least one neighbour of rank 2 names it; later collectives on the broken ring refuse at once.
    expect([rank1, rank3].some((error) => (error as Error).message.includes('rank 2'))).toBe(true);
    await expect(ring.comms[0]!.allReduce(new Float32Array(10), 3)).rejects.toBeInstanceOf(CollectiveError);
  });

  it("rejects the left neighbour's collective when a rank's data server goes away", async () => {
    const { ring, pending } = await stalledRing();
    await ring.servers[2]!.close();
    const [, rank1] = await Promise.all(pending);
    expectNeighbourFailure(rank1, 1);
    expect((rank1 as Error).message).toMatch(/rank 2/);
  });

  it('rejects collectives on a closed communicator, on its right neighbour, and out of order', async () => {
    const ring = await startRing(2, 1024);
    await allReduceAndCheck(ring, randomBuffers(2, 100, makeRandom(1)), 4);
    await expect(ring.comms[0]!.allReduce(new Float32Array(100), 4)).rejects.toThrow(/does not follow step 4/);
    await expect(ring.comms[0]!.allReduce(new Float32Array(100), 3, 9)).rejects.toBeInstanceOf(CollectiveError);
    await ring.comms[0]!.close();
    await expect(ring.comms[0]!.allReduce(new Float32Array(100), 5)).rejects.toThrow(/closed/);
    const error = await ring.comms[1]!.allReduce(new Float32Array(100), 5).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/rank 0/);
  });
});

describe('ring protocol checks', () => {
  it('refuses a handshake from a stale generation with FAILED_PRECONDITION', async () => {
    const server = await startServer();
    server.expect(5, 0);
    const { call, status } = rawPush(server.port);
    call.write({ kind: 'HANDSHAKE', generation: 4, senderRank: 0 });
    expect(await status).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('refuses a DATA frame from a stale generation on an attached stream and fails the collective', async () => {
    const server = await startServer();
    server.expect(5, 0);
    const { call, status } = rawPush(server.port);
    call.write({ kind: 'HANDSHAKE', generation: 5, senderRank: 0 });
    await server.waitForLeft(TIMEOUT_MS);
    const waiting = server
      .inboxFor(5)
      .take({ step: 1, collective: 0, round: 0, chunk: 0 })
      .catch((e: unknown) => e);
    call.write(dataFrame(4, 0, Float32Array.of(1, 2)));
    expect(await status).toBe(grpc.status.FAILED_PRECONDITION);
    const error = await waiting;
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/generation 4, expected 5/);
  });

  it('refuses a frame whose length does not match its payload', async () => {
    const server = await startServer();
    server.expect(1, 0);
    const { call, status } = rawPush(server.port);
    call.write({ kind: 'HANDSHAKE', generation: 1, senderRank: 0 });
    call.write(dataFrame(1, 0, Float32Array.of(1, 2), { length: 3 }));
    expect(await status).toBe(grpc.status.FAILED_PRECONDITION);
    await expect(server.inboxFor(1).take({ step: 1, collective: 0, round: 0, chunk: 0 })).rejects.toBeInstanceOf(
      CollectiveError,
    );
  });

  it('cuts the attached stream when a new generation begins', async () => {
    const server = await startServer();
    server.expect(1, 0);
    const { call, status } = rawPush(server.port);
    call.write({ kind: 'HANDSHAKE', generation: 1, senderRank: 0 });
    await server.waitForLeft(TIMEOUT_MS);
    server.expect(2, 0);
    expect(await status).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('holds a handshake for a future generation until the server reaches it', async () => {
    const server = await startServer();
    server.expect(1, 0);
    const { call } = rawPush(server.port);
    call.write({ kind: 'HANDSHAKE', generation: 2, senderRank: 0 });
    call.write(dataFrame(2, 0, Float32Array.of(4, 5, 6)));
    await expect(server.waitForLeft(200)).rejects.toBeInstanceOf(CollectiveError);
    server.expect(2, 0);
    await server.waitForLeft(TIMEOUT_MS);
    const payload = await server.inboxFor(2).take({ step: 1, collective: 0, round: 0, chunk: 0 }, TIMEOUT_MS);
    expect([...payload]).toEqual([4, 5, 6]);
  });

  it('fails the collective of a communicator whose generation the neighbour has left behind', async () => {
    const [left, right] = [await startServer(), await startServer()];
    right.expect(2, 0);
    const comm = await RingCommunicator.connect({
      server: left,
      rank: 0,
      worldSize: 2,
      generation: 1,
      rightAddress: `127.0.0.1:${right.port}`,
      chunkBytes: 1024,
      collectiveTimeoutMs: TIMEOUT_MS,
      logger,
    });
    cleanups.push(() => comm.close());
    const error = await comm.allReduce(new Float32Array(16), 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CollectiveError);
    expect((error as Error).message).toMatch(/rank 1.*stale generation 1/);
  });

  it('reports a taken port as PortInUseError', async () => {
    const server = await startServer();
    await expect(RingDataServer.start({ host: '127.0.0.1', port: server.port, logger })).rejects.toMatchObject({
      name: 'PortInUseError',
    });
  });
});
