// The rule both ring transports enforce before any data moves: collectives on one communicator
// run one at a time, in strictly increasing (step, collective) order.
import { CollectiveError } from '../../shared/errors.js';

export class CollectiveOrder {
  private last = { step: -1, collective: -1 };

  constructor(private readonly rank: number) {}

  /** Admits (step, collective) or throws CollectiveError; `inFlight` says one is still running. */
  begin(step: number, collective: number, inFlight: boolean): void {
    if (inFlight) {
      throw new CollectiveError(
        `rank ${this.rank}: an all-reduce is already running; collectives on one ring run one at a time`,
      );
    }
    const { step: lastStep, collective: lastCollective } = this.last;
    if (step < lastStep || (step === lastStep && collective <= lastCollective)) {
      throw new CollectiveError(
        `rank ${this.rank}: all-reduce for step ${step} collective ${collective} does not follow step ${lastStep} collective ${lastCollective}`,
      );
    }
    this.last = { step, collective };
  }
}
