// Peak resident memory of the worker processes a benchmark starts, read from outside: this
// process polls /proc for its own children and keeps each one's VmHWM (the kernel's high-water
// mark, so a late sample still sees the peak). Linux only; elsewhere the map stays empty.
import { readFileSync } from 'node:fs';

export class ChildRssMonitor {
  /** pid -> { rank from the worker's --rank-hint (or -1), peak bytes } */
  private readonly peaks = new Map<number, { rank: number; peakBytes: number }>();
  private timer: NodeJS.Timeout | undefined;

  start(intervalMs = 250): void {
    this.timer ??= setInterval(() => this.sample(), intervalMs);
  }

  /** Stops polling; peak bytes by rank (a rank seen twice keeps its larger peak). */
  stop(): Map<number, number> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    const byRank = new Map<number, number>();
    for (const { rank, peakBytes } of this.peaks.values()) byRank.set(rank, Math.max(peakBytes, byRank.get(rank) ?? 0));
    return byRank;
  }

  private sample(): void {
    for (const pid of childPids()) {
      const peakBytes = readPeakRss(pid);
      if (peakBytes === undefined) continue;
      const known = this.peaks.get(pid);
      if (known !== undefined) known.peakBytes = Math.max(known.peakBytes, peakBytes);
      else this.peaks.set(pid, { rank: rankHintOf(pid), peakBytes });
    }
  }
}

function childPids(): number[] {
  const text = readProc(`/proc/${process.pid}/task/${process.pid}/children`) ?? '';
  return text
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number);
}

function readPeakRss(pid: number): number | undefined {
  const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(readProc(`/proc/${pid}/status`) ?? '');
  return match === null ? undefined : Number(match[1]) * 1024;
}

/** Local workers are started with `--rank-hint <index>`; their rank follows it. */
function rankHintOf(pid: number): number {
  const args = (readProc(`/proc/${pid}/cmdline`) ?? '').split('\0');
  const at = args.indexOf('--rank-hint');
  return at >= 0 ? Number(args[at + 1]) : -1;
}

function readProc(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined; // gone already, or not Linux
  }
}
