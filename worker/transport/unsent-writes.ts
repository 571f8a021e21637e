// Counts the DATA frames a collective has queued on its socket whose write has not completed.
// Frames carry views of the caller's buffer (no staging copy), so the collective may hand the
// buffer back only once this count is zero: a completed write means the kernel has copied
// every byte, and a write that failed (the socket was destroyed) will never read it again.

export class UnsentWrites {
  private unsent = 0;
  private waiters: Array<() => void> = [];

  /** Frames queued whose write callback has not run yet. */
  get count(): number {
    return this.unsent;
  }

  /** Call once per queued frame; the returned callback must run exactly once, when its write completes or fails. */
  add(): () => void {
    this.unsent++;
    return () => this.complete();
  }

  /** Resolves when no frame is unsent (at once if none is). */
  settled(): Promise<void> {
    if (this.unsent === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private complete(): void {
    if (--this.unsent > 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
