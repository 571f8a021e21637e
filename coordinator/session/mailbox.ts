// A keyed rendezvous between a stream's message handler and the code awaiting a reply.
// Invariants: once failed, every pending and future wait rejects with the same error; at most
// `maxArrived` values wait unclaimed (the oldest goes first), so a peer that sends replies nobody
// asked for cannot grow it without bound.
import { systemClock, type Clock } from '../../shared/clock.js';

interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (error: Error) => void;
  cancelTimer: (() => void) | undefined;
}

export class Mailbox<T> {
  private readonly arrived = new Map<string, T>();
  private readonly waiters = new Map<string, Waiter<T>>();
  private failure: Error | undefined;

  /** `clock` times the waits' deadlines. */
  constructor(
    private readonly clock: Clock = systemClock,
    private readonly maxArrived = 256,
  ) {}

  /** Stores a value for `key`, or hands it to whoever already waits for it. */
  deliver(key: string, value: T): void {
    const waiter = this.waiters.get(key);
    if (waiter !== undefined) {
      this.waiters.delete(key);
      waiter.cancelTimer?.();
      waiter.resolve(value);
      return;
    }
    this.arrived.delete(key);
    this.arrived.set(key, value);
    if (this.arrived.size > this.maxArrived) {
      const oldest = this.arrived.keys().next();
      if (oldest.done !== true) this.arrived.delete(oldest.value);
    }
  }

  /** Values stored with nobody waiting for them yet. */
  get unclaimed(): number {
    return this.arrived.size;
  }

  /** Resolves with the value for `key`; rejects after `timeoutMs` with `onTimeout()`. */
  wait(key: string, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const ready = this.arrived.get(key);
    if (ready !== undefined) {
      this.arrived.delete(key);
      return Promise.resolve(ready);
    }
    if (this.waiters.has(key)) return Promise.reject(new Error(`mailbox: two waiters for "${key}"`));
    return new Promise<T>((resolve, reject) => {
      const cancelTimer = Number.isFinite(timeoutMs)
        ? this.clock.after(timeoutMs, () => {
            this.waiters.delete(key);
            reject(onTimeout());
          })
        : undefined;
      this.waiters.set(key, { resolve, reject, cancelTimer });
    });
  }

  /** Rejects every pending and future wait. */
  fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    for (const waiter of this.waiters.values()) {
      waiter.cancelTimer?.();
      waiter.reject(error);
    }
    this.waiters.clear();
    this.arrived.clear();
  }

  get failed(): Error | undefined {
    return this.failure;
  }
}
