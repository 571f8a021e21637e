// Names ranks that stay slower than the others: every step each rank's compute time is compared
// with the median over ranks; a rank above median × (1 + margin) for `patienceSteps` steps in a
// row is reported once (event + summary), and again only after it recovered and relapsed.
import type { StepOutcome } from './step-driver.js';

export interface StragglerReport {
  rank: number;
  host: string;
  step: number;
  computeMs: number;
  medianMs: number;
}

export class StragglerDetector {
  private readonly slowStreak = new Map<string, number>();
  readonly reports: StragglerReport[] = [];

  constructor(
    /** Fraction above the median that counts as slow. @default 0.5 */
    private readonly margin: number,
    private readonly patienceSteps: number,
    private readonly onStraggler: (report: StragglerReport) => void,
  ) {}

  /** `hosts[rank]` names each rank's host, for the report. */
  observe(outcome: StepOutcome, hosts: string[]): void {
    if (outcome.ranks.length < 2) return;
    const sorted = outcome.ranks.map((r) => r.computeMs).sort((a, b) => a - b);
    const medianMs = sorted[Math.floor((sorted.length - 1) / 2)] ?? 0;
    for (const rank of outcome.ranks) {
      const key = `${rank.rank}@${hosts[rank.rank] ?? '?'}`;
      const slow = medianMs > 0 && rank.computeMs > medianMs * (1 + this.margin);
      const streak = slow ? (this.slowStreak.get(key) ?? 0) + 1 : 0;
      this.slowStreak.set(key, streak);
      if (streak === this.patienceSteps) {
        const report = {
          rank: rank.rank,
          host: hosts[rank.rank] ?? '?',
          step: outcome.step,
          computeMs: rank.computeMs,
          medianMs,
        };
        this.reports.push(report);
        this.onStraggler(report);
      }
    }
  }

  /** A new generation renumbers ranks: streaks start over. */
  reset(): void {
    this.slowStreak.clear();
  }
}
