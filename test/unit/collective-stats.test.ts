// When a collective's first frame arrived (FrameInbox.firstArrivalMs) and the wait computed from
// it (collectiveStats): the first delivery of each (step, collective) counts, one that arrives
// before its collective opens is kept, earlier collectives are forgotten, a failure forgets all.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CollectiveError } from '../../shared/errors.js';
import { collectiveStats } from '../../worker/collectives/collective-stats.js';
import { FrameInbox } from '../../worker/collectives/frame-inbox.js';

/** performance.now() reads `clock.ms`. */
function fakeClock(): { ms: number } {
  const clock = { ms: 0 };
  vi.spyOn(performance, 'now').mockImplementation(() => clock.ms);
  return clock;
}

const frame = (step: number, collective: number, round = 0, chunk = 0) => ({ step, collective, round, chunk });

afterEach(() => {
  vi.restoreAllMocks();
});

describe('FrameInbox.firstArrivalMs', () => {
  it('is the first delivery of a collective, including one before the collective opened', () => {
    const clock = fakeClock();
    const inbox = new FrameInbox(0);
    inbox.openCollective(1, 0);
    expect(inbox.firstArrivalMs(1, 0)).toBeUndefined();
    clock.ms = 10;
    inbox.deliver(frame(1, 0), new Float32Array(1));
    clock.ms = 12;
    inbox.deliver(frame(1, 0, 0, 1), new Float32Array(1));
    // The left neighbour is already on the next collective.
    clock.ms = 15;
    inbox.deliver(frame(1, 1), new Float32Array(1));
    expect(inbox.firstArrivalMs(1, 0)).toBe(10);
    expect(inbox.firstArrivalMs(1, 1)).toBe(15);
    void inbox.take(frame(1, 0));
    void inbox.take(frame(1, 0, 0, 1));
    inbox.openCollective(1, 1);
    expect(inbox.firstArrivalMs(1, 0)).toBeUndefined();
    expect(inbox.firstArrivalMs(1, 1)).toBe(15);
  });

  it('forgets every arrival when the inbox fails', () => {
    fakeClock();
    const inbox = new FrameInbox(0);
    inbox.deliver(frame(2, 0), new Float32Array(1));
    inbox.fail(new CollectiveError('left neighbour closed'));
    expect(inbox.firstArrivalMs(2, 0)).toBeUndefined();
  });
});

describe('collectiveStats', () => {
  it('waits from the start until the first frame, never less than 0', () => {
    expect(collectiveStats(100, 340)).toEqual({ waitMs: 240 });
    expect(collectiveStats(100, 60)).toEqual({ waitMs: 0 });
    expect(collectiveStats(100, undefined)).toEqual({ waitMs: 0 });
  });
});
