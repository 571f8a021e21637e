// Rendezvous between frames arriving from the left ring neighbour and the all-reduce waiting
// for them. `deliver` and `take` meet on a FrameKey in either order.
// Invariants:
//   - at most one untaken payload and at most one waiting take per key (a second is a
//     protocol error: keys are unique within a generation);
//   - keys below the collective floor (an older step/collective) are refused, so a frame left
//     over from an earlier collective can never be mistaken for a current one;
//   - after `fail`, every pending and future take rejects with that error and deliveries are dropped.
// It also holds placements: where the receiver should read a payload straight into the caller's
// buffer. They are dropped by `fail`, by the next `openCollective` and by `clearPlacements`, so
// none outlives the collective whose buffer it names.
// And it notes when the first frame of each collective arrived (firstArrivalMs), which splits a
// collective's time into waiting for peers and communication (collective-stats.ts).
import { CollectiveError } from '../../shared/errors.js';

export interface FrameKey {
  step: number;
  /** Collective sequence number within the step. */
  collective: number;
  round: number;
  chunk: number;
}

/** Elements [offset, offset + target.length) of a collective's buffer, where a payload may land. */
export interface Placement {
  offset: number;
  target: Float32Array;
  /** The payload is added into `target` as it arrives (a reduce-scatter chunk) instead of copied over it. @default false */
  reduce?: boolean;
}

interface Waiter {
  resolve(payload: Float32Array): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
}

export class FrameInbox {
  private readonly held = new Map<string, { key: FrameKey; payload: Float32Array }>();
  private readonly waiting = new Map<string, Waiter>();
  private readonly placements = new Map<string, Placement>();
  /**
   * performance.now() of the first delivery for each (step, collective) at or above the floor:
   * the current collective and at most the next (a faster left neighbour may start it first).
   */
  private readonly firstArrivals = new Map<string, { step: number; collective: number; arrivedMs: number }>();
  private floor = { step: -1, collective: -1 };
  private failure: Error | undefined;

  /** `fromRank`: the left neighbour, named in errors. */
  constructor(readonly fromRank: number) {}

  /** The error the inbox failed with, if any. */
  get failedWith(): Error | undefined {
    return this.failure;
  }

  /** Number of payloads delivered but not yet taken. */
  get heldCount(): number {
    return this.held.size;
  }

  /** Hands over a payload from the left neighbour. Throws CollectiveError on a protocol violation. */
  deliver(key: FrameKey, payload: Float32Array): void {
    if (this.failure !== undefined) return;
    if (isBelow(key, this.floor)) {
      throw new CollectiveError(
        `stale frame from rank ${this.fromRank}: ${describeKey(key)} arrived after collective ${describeFloor(this.floor)} began`,
      );
    }
    const collectiveId = collectiveIdOf(key.step, key.collective);
    if (!this.firstArrivals.has(collectiveId))
      this.firstArrivals.set(collectiveId, {
        step: key.step,
        collective: key.collective,
        arrivedMs: performance.now(),
      });
    const id = keyId(key);
    const waiter = this.waiting.get(id);
    if (waiter !== undefined) {
      this.waiting.delete(id);
      clearTimeout(waiter.timer);
      waiter.resolve(payload);
      return;
    }
    if (this.held.has(id)) {
      throw new CollectiveError(
        `duplicate frame from rank ${this.fromRank}: ${describeKey(key)} was already delivered and not yet taken`,
      );
    }
    this.held.set(id, { key, payload });
  }

  /** The payload for `key`, now or once delivered. Rejects with CollectiveError after `timeoutMs` (if given) or on `fail`. */
  take(key: FrameKey, timeoutMs?: number): Promise<Float32Array> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = keyId(key);
    const held = this.held.get(id);
    if (held !== undefined) {
      this.held.delete(id);
      return Promise.resolve(held.payload);
    }
    if (this.waiting.has(id)) {
      return Promise.reject(
        new CollectiveError(`${describeKey(key)} from rank ${this.fromRank} is already being waited for`),
      );
    }
    return new Promise<Float32Array>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined };
      if (timeoutMs !== undefined) {
        waiter.timer = setTimeout(() => {
          this.waiting.delete(id);
          reject(
            new CollectiveError(
              `timed out after ${timeoutMs} ms waiting for ${describeKey(key)} from rank ${this.fromRank}`,
            ),
          );
        }, timeoutMs);
      }
      this.waiting.set(id, waiter);
    });
  }

  /** When the first frame of (step, collective) was delivered (performance.now()), or undefined if none was yet. */
  firstArrivalMs(step: number, collective: number): number | undefined {
    return this.firstArrivals.get(collectiveIdOf(step, collective))?.arrivedMs;
  }

  /** Asks for the payload of `key` to be read into `placement.target` instead of pooled storage. */
  place(key: FrameKey, placement: Placement): void {
    if (this.failure === undefined && !isBelow(key, this.floor)) this.placements.set(keyId(key), placement);
  }

  /** The placement for `key`, once (the receiver is about to fill it), or undefined. */
  claimPlacement(key: FrameKey): Placement | undefined {
    const id = keyId(key);
    const placement = this.placements.get(id);
    this.placements.delete(id);
    return placement;
  }

  /** Forgets every placement: nothing more is read into a collective's buffer. */
  clearPlacements(): void {
    this.placements.clear();
  }

  /**
   * Marks the start of collective (step, collective): every earlier key becomes stale. A payload
   * still held for an earlier collective means the ranks disagree on what was reduced, which
   * fails the inbox.
   */
  openCollective(step: number, collective: number): void {
    const floor = { step, collective };
    for (const { key } of this.held.values()) {
      if (isBelow(key, floor)) {
        const error = new CollectiveError(
          `rank ${this.fromRank} sent ${describeKey(key)} that was never consumed; ranks disagree on buffer length or collective order`,
        );
        this.fail(error);
        throw error;
      }
    }
    this.floor = floor;
    this.placements.clear();
    for (const [id, arrival] of this.firstArrivals) if (isBelow(arrival, floor)) this.firstArrivals.delete(id);
  }

  /** Rejects all pending and future takes with `error`. The first failure wins. */
  fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.held.clear();
    this.placements.clear();
    this.firstArrivals.clear();
    for (const waiter of this.waiting.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.waiting.clear();
  }
}

function keyId(key: FrameKey): string {
  return `${key.step}/${key.collective}/${key.round}/${key.chunk}`;
}

function collectiveIdOf(step: number, collective: number): string {
  return `${step}/${collective}`;
}

function isBelow(key: { step: number; collective: number }, floor: { step: number; collective: number }): boolean {
  return key.step < floor.step || (key.step === floor.step && key.collective < floor.collective);
}

function describeKey(key: FrameKey): string {
  return `step ${key.step} collective ${key.collective} round ${key.round} chunk ${key.chunk}`;
}

function describeFloor(floor: { step: number; collective: number }): string {
  return `step ${floor.step} collective ${floor.collective}`;
}
