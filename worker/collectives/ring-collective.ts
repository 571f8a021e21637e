// What a training step needs from a ring, whatever carries its bytes: the seam between the
// replica's step and the transport (worker/transport implements it over TCP; tests use an
// in-memory ring).
import type { CollectiveStats } from './collective-stats.js';

export interface RingCollective {
  /** In-place sum over all ranks; (step, collective) strictly increase across calls. Resolves with how long this rank waited for its peers. */
  allReduce(buffer: Float32Array, step: number, collective?: number): Promise<CollectiveStats>;
  close(): Promise<void>;
}
