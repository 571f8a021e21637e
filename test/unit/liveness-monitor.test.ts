// The liveness monitor judges silence on its own clock (injected here): a peer silent for longer
// than hangMs is reported, but not when the monitor's own ticks show that this process was paused.
import { afterEach, describe, expect, it } from 'vitest';
import { LivenessMonitor } from '../../coordinator/loop/liveness-monitor.js';
import type { RingMember } from '../../coordinator/loop/membership.js';

const HANG_MS = 4_000; // ticks every 1 s

function member(id: number, clock: { now: number }): RingMember & { heard: () => void } {
  const session = { id, lastHeartbeatMs: clock.now, isClosed: false, busy: undefined };
  return {
    session: session as unknown as RingMember['session'],
    rank: id,
    paramCount: 1,
    backend: 'cpu',
    heard: () => (session.lastHeartbeatMs = clock.now),
  };
}

let monitor: LivenessMonitor | undefined;
afterEach(() => monitor?.close());

describe('LivenessMonitor', () => {
  it('reports a peer silent for longer than hangMs while this process ran, once', () => {
    const clock = { now: 0 };
    const [quiet, chatty] = [member(1, clock), member(2, clock)];
    const hung: number[] = [];
    monitor = new LivenessMonitor(
      () => [quiet, chatty],
      HANG_MS,
      (m) => hung.push(m.rank),
      () => undefined,
      () => clock.now,
    );
    for (let t = 1_000; t <= 6_000; t += 1_000) {
      clock.now = t;
      chatty.heard();
      monitor.check();
    }
    expect(hung).toEqual([1]);
  });

  it('after a gap in its own ticks (a paused coordinator), gives every peer a fresh hangMs', () => {
    const clock = { now: 0 };
    const peer = member(1, clock);
    const hung: number[] = [];
    monitor = new LivenessMonitor(
      () => [peer],
      HANG_MS,
      (m) => hung.push(m.rank),
      () => undefined,
      () => clock.now,
    );
    clock.now = 1_000;
    monitor.check();
    clock.now = 17_000; // SIGSTOP for 16 s: the peer's heartbeats wait unread in the socket
    monitor.check();
    expect(hung).toEqual([]);
    clock.now = 17_010;
    peer.heard(); // read right after the resume
    for (let t = 18_000; t <= 20_000; t += 1_000) {
      clock.now = t;
      monitor.check();
    }
    expect(hung).toEqual([]);
    // A peer that stays silent after the gap is still reported, hangMs after it.
    for (let t = 21_000; t <= 23_000; t += 1_000) {
      clock.now = t;
      monitor.check();
    }
    expect(hung).toEqual([1]);
  });
});
