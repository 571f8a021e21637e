// Notices hung workers (SIGSTOP, a cut link): a rank whose control stream has been silent for
// longer than `hangMs` is reported once. Heartbeats arrive every second from every worker, so
// silence means the process is not running or cannot reach the coordinator.
import type { RingMember } from './membership.js';

export class LivenessMonitor {
  private readonly timer: NodeJS.Timeout;
  private readonly reported = new Set<number>();
  private longestStepMs = 0;

  constructor(
    private readonly members: () => RingMember[],
    private readonly hangMs: number,
    private readonly onHang: (member: RingMember, silentMs: number) => void,
  ) {
    this.timer = setInterval(() => this.check(), Math.min(1_000, Math.max(100, hangMs / 4)));
    this.timer.unref();
  }

  /**
   * A worker's heartbeat timer cannot fire while TensorFlow.js computes synchronously, so a long
   * step looks like silence: the threshold is at least 3× the longest step seen so far.
   */
  noteStep(wallMs: number): void {
    this.longestStepMs = Math.max(this.longestStepMs, wallMs);
  }

  private check(): void {
    const now = Date.now();
    const thresholdMs = Math.max(this.hangMs, 3 * this.longestStepMs);
    for (const member of this.members()) {
      const silentMs = now - member.session.lastHeartbeatMs;
      if (silentMs > thresholdMs && !member.session.isClosed && !this.reported.has(member.session.id)) {
        this.reported.add(member.session.id);
        this.onHang(member, silentMs);
      }
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
