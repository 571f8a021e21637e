// Time as a test input: a Clock that moves only when the test advances it, so every deadline
// fires on an event the test chose, never because the machine was slow.
import type { Clock } from '../../shared/clock.js';

/** A clock that moves only when the test says so. */
export class ManualClock implements Clock {
  private nowMs = 1_700_000_000_000;
  private timers: Array<{ id: number; dueMs: number; fn: () => void }> = [];
  private nextId = 1;

  now(): number {
    return this.nowMs;
  }

  after(ms: number, fn: () => void): () => void {
    const id = this.nextId++;
    this.timers.push({ id, dueMs: this.nowMs + ms, fn });
    return () => {
      this.timers = this.timers.filter((t) => t.id !== id);
    };
  }

  /** Timers scheduled and not yet run or cancelled. */
  get pendingTimers(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, running every timer that falls due, earliest first. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.dueMs <= target).sort((a, b) => a.dueMs - b.dueMs || a.id - b.id)[0];
      if (due === undefined) break;
      this.timers = this.timers.filter((t) => t.id !== due.id);
      this.nowMs = Math.max(this.nowMs, due.dueMs);
      due.fn();
    }
    this.nowMs = target;
  }
}
