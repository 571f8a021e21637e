// Notices hung workers (SIGSTOP, a cut link): a rank that has sent nothing for longer than
// `hangMs` is reported once. Every worker beats once a second from a heartbeat thread beside its
// compute thread (worker/process/heartbeat.ts), so a long synchronous step does not silence it:
// silence means the process is not running or cannot reach the coordinator. A rank whose beats
// say it has been busy with one task for longer than `hangMs` is reported once per task as slow,
// never evicted for it.
import type { RingMember } from './membership.js';
import type { BusyState } from './worker-link.js';

export class LivenessMonitor {
  private readonly timer: NodeJS.Timeout;
  private readonly reported = new Set<number>();
  /** Per session id, the busy task last reported as slow ("step:12"). */
  private readonly slowReported = new Map<number, string>();

  constructor(
    private readonly members: () => RingMember[],
    private readonly hangMs: number,
    private readonly onHang: (member: RingMember, silentMs: number) => void,
    private readonly onSlow: (member: RingMember, busy: BusyState) => void = () => undefined,
  ) {
    this.timer = setInterval(() => this.check(), Math.min(1_000, Math.max(100, hangMs / 4)));
    this.timer.unref();
  }

  private check(): void {
    const now = Date.now();
    for (const member of this.members()) {
      const { session } = member;
      if (session.isClosed || this.reported.has(session.id)) continue;
      const silentMs = now - session.lastHeartbeatMs;
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
