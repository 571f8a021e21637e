// Latency path of the all-reduce for small buffers, over the same RingLink as the ring.
//
// The ring needs 2(N−1) dependent hops; here every rank's whole buffer travels once around the
// ring (N−1 hops, round k forwards the contribution of rank r − k), and then every rank adds the
// N contributions in rank order 0, 1, …, N−1. Same inputs, same order, same float32 rounding:
// every rank ends bit-identical. Each rank sends (N−1)·L·4 bytes instead of 2(N−1)/N·L·4, which
// is cheap only while L is small, hence the size threshold in the transport.
import { CollectiveError } from '../../shared/errors.js';
import type { RingLink } from './ring-allreduce.js';
import { addFloat32Into } from './simd-add.js';

/** In-place sum all-reduce of a small `buffer`; every rank must pass the same length. */
export async function allGatherSum(
  buffer: Float32Array,
  rank: number,
  worldSize: number,
  link: RingLink,
): Promise<void> {
  if (worldSize <= 1) return;
  const contributions: Float32Array[] = [];
  contributions[rank] = buffer.slice();
  let outgoing = contributions[rank];
  for (let round = 0; round < worldSize - 1; round++) {
    await link.send({ round, segment: mod(rank - round, worldSize), chunk: 0, offset: 0, data: outgoing });
    const received = await link.receive(round, 0);
    if (received.length !== buffer.length) {
      throw new CollectiveError(
        `round ${round}: received ${received.length} floats, expected ${buffer.length}; buffer lengths differ across ranks`,
      );
    }
    outgoing = received.slice(); // the link reclaims `received` at its next call
    contributions[mod(rank - round - 1, worldSize)] = outgoing;
  }
  buffer.set(contributions[0]!);
  // Each add rounds to float32: the same sequence of float32 additions on every rank.
  for (let origin = 1; origin < worldSize; origin++) addFloat32Into(buffer, contributions[origin]!);
}

function mod(value: number, modulus: number): number {
  return ((value % modulus) + modulus) % modulus;
}
