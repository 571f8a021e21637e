// Notices hung workers (SIGSTOP, a cut link): a rank that has sent nothing for longer than
// `hangMs` is reported once. Every worker beats once a second from a heartbeat thread beside its
// compute thread (worker/process/heartbeat.ts), so a long synchronous step does not silence it:
// silence means the process is not running or cannot reach the coordinator. A rank whose beats
// say it has been busy with one task for longer than `hangMs` is reported once per task as slow,
// never evicted for it.
//
// Invariant: silence is only ever counted while this coordinator itself was running. When its own
// event loop stalled (the process was paused by SIGSTOP, swapped out, or blocked), its ticks show
// a gap; the heartbeats that arrived meanwhile wait unread in its sockets (timers run before I/O
// on resume), so every peer gets a fresh `hangMs` from the end of the gap instead of an eviction.
import type { RingMember } from './membership.js';
import type { BusyState } from './worker-link.js';

export class LivenessMonitor {
  private readonly timer: NodeJS.Timeout;
  private readonly reported = new Set<number>();
  /** Per session id, the busy task last reported as slow ("step:12"). */
  private readonly slowReported = new Map<number, string>();
  private readonly tickMs: number;
  private lastTickMs: number;
  /** Silence is counted from here at the earliest: the end of the last gap in this process's own progress. */
  private judgeFromMs: number;

  constructor(
    private readonly members: () => RingMember[],
    private readonly hangMs: number,
    private readonly onHang: (member: RingMember, silentMs: number) => void,
    private readonly onSlow: (member: RingMember, busy: BusyState) => void = () => undefined,
    /** The clock sessions stamp `lastHeartbeatMs` with; an input so that tests can drive it. */
    private readonly now: () => number = () => Date.now(),
  ) {
    this.tickMs = Math.min(1_000, Math.max(100, hangMs / 4));
    this.lastTickMs = now();
    this.judgeFromMs = this.lastTickMs;
    this.timer = setInterval(() => this.check(), this.tickMs);
    this.timer.unref();
  }

  /** One tick: first notices a gap in this process's own progress, then judges each peer. */
  check(): void {
    const now = this.now();
    // A tick due every tickMs (at most hangMs / 4) that comes a whole tick late means this process
    // did not run meanwhile. A false alarm only postpones an eviction by one hangMs.
    if (now - this.lastTickMs > 2 * this.tickMs) this.judgeFromMs = now;
    this.lastTickMs = now;
    for (const member of this.members()) {
      const { session } = member;
      if (session.isClosed || this.reported.has(session.id)) continue;
      const silentMs = now - Math.max(session.lastHeartbeatMs, this.judgeFromMs);
      if (silentMs > this.hangMs) {
        this.reported.add(session.id);
        this.onHang(member, silentMs);
        continue;
      }
      const busy = session.busy;
      const task = busy === undefined ? '' : `${busy.kind}:${busy.step}`;
      if (busy !== undefined && busy.busyMs > this.hangMs && this.slowReported.get(session.id) !== task) {
        this.slowReported.set(session.id, task);
        this.onSlow(member, busy);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
