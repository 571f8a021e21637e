// Notices hung workers (SIGSTOP, a cut link): a rank whose control stream has been silent for
// longer than `hangMs` is reported once. Heartbeats arrive every second from every worker, so
// silence means the process is not running or cannot reach the coordinator.
import type { RingMember } from './membership.js';

export class LivenessMonitor {
  private readonly timer: NodeJS.Timeout;
  private readonly reported = new Set<number>();

  constructor(
    private readonly members: () => RingMember[],
    private readonly hangMs: number,
    private readonly onHang: (member: RingMember, silentMs: number) => void,
  ) {
    this.timer = setInterval(() => this.check(), Math.min(1_000, Math.max(100, hangMs / 4)));
    this.timer.unref();
  }

  private check(): void {
    const now = Date.now();
    for (const member of this.members()) {
      const silentMs = now - member.session.lastHeartbeatMs;
      if (silentMs > this.hangMs && !member.session.isClosed && !this.reported.has(member.session.id)) {
        this.reported.add(member.session.id);
        this.onHang(member, silentMs);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
