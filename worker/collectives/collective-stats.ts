// What a collective reports besides its result: how long this rank waited for its peers before
// any data of it arrived. A collective's time splits into that wait (the slower ranks are still
// computing: skew) and communication (the rest).
//
// Start: when this rank entered the collective. Arrival: when the first DATA frame of the same
// (step, collective) from the left neighbour was handed to the FrameInbox, which happens once the
// whole frame is read, so one chunk's transfer counts as wait. A frame that was there before the
// collective started means no wait.
//
// Limits of the measure: it sees the left neighbour only. At N = 2 that is every peer; at N > 2 a
// late rank further round the ring holds this rank up later, in a reduce-scatter round, which
// counts as communication here. And a sender that was descheduled (or paused in GC) between
// starting the collective and writing its first chunk looks like a late peer.

export interface CollectiveStats {
  /** Start of the collective to the first frame of it from the left neighbour; 0 if none was awaited. */
  waitMs: number;
}

/** World size 1: nothing to wait for. */
export const NO_WAIT: Readonly<CollectiveStats> = Object.freeze({ waitMs: 0 });

/** Stats of a collective started at `startedMs` whose first frame arrived at `firstArrivalMs` (both performance.now()). */
export function collectiveStats(startedMs: number, firstArrivalMs: number | undefined): CollectiveStats {
  if (firstArrivalMs === undefined) return { waitMs: 0 };
  return { waitMs: Math.max(0, firstArrivalMs - startedMs) };
}
