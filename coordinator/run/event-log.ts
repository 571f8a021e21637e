// What happened to the job, for summary.json `events` and the logs: joins, failures, evictions,
// restarts, recoveries, skipped steps and checkpoint fallbacks.
import type { Logger } from '../../shared/logger.js';

export type EventKind =
  | 'join'
  | 'failure'
  | 'eviction'
  | 'restart'
  | 'recovery'
  | 'skipped-step'
  | 'checkpoint-fallback'
  | 'preempted'
  | 'stopped-by-callback'
  | 'straggler'
  | 'rejoin-refused';

export interface JobEvent {
  kind: EventKind;
  /** The rank concerned, or -1. */
  rank: number;
  /** The global step it happened at (the next step to run). */
  step: number;
  at: string;
  detail: string;
}

export class EventLog {
  readonly events: JobEvent[] = [];

  constructor(
    private readonly logger: Logger,
    private readonly onEvent: (event: JobEvent) => void = () => undefined,
  ) {}

  record(kind: EventKind, rank: number, step: number, detail: string): JobEvent {
    const event: JobEvent = { kind, rank, step, at: new Date().toISOString(), detail };
    this.events.push(event);
    const level = kind === 'join' || kind === 'recovery' ? 'info' : 'warn';
    this.logger[level]({ event: kind, rank, step }, detail);
    this.onEvent(event);
    return event;
  }

  count(kind: EventKind): number {
    return this.events.filter((e) => e.kind === kind).length;
  }
}
