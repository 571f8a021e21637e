// The ring between memory workers, as the coordinator sees its effect: the collective of
// (generation, step) completes on every rank once each rank of that generation has contributed
// its shard, and every rank gets the sum and count of the whole global batch (what the all-reduce
// gives). A dead rank breaks its generation's ring for everyone waiting in it, now or later.

export type StepOutcome = { kind: 'done'; sum: number; count: number } | { kind: 'broken'; reason: string };

interface Collective {
  worldSize: number;
  parts: Map<number, Uint32Array>;
  waiters: Map<number, (outcome: StepOutcome) => void>;
  broken: string | undefined;
}

/** A rank scripted to die inside the collective of (generation, step): who completes it first. */
export type DeathInCollective = { finishers: number[]; die: () => void } | undefined;

export class MemoryRing {
  private readonly collectives = new Map<string, Collective>();
  private readonly brokenGenerations = new Map<number, string>();

  constructor(private readonly deathIn: (generation: number, step: number) => DeathInCollective) {}

  /** Adds `rank`'s shard to the collective of (generation, step); resolves when it ends for `rank`. */
  contribute(
    generation: number,
    step: number,
    rank: number,
    worldSize: number,
    shard: Uint32Array,
  ): Promise<StepOutcome> {
    const key = `${generation}:${step}`;
    let collective = this.collectives.get(key);
    if (collective === undefined) {
      collective = { worldSize, parts: new Map(), waiters: new Map(), broken: undefined };
      this.collectives.set(key, collective);
    }
    const broken = collective.broken ?? this.brokenGenerations.get(generation);
    if (broken !== undefined) return Promise.resolve({ kind: 'broken', reason: broken });
    const c = collective;
    const outcome = new Promise<StepOutcome>((resolve) => c.waiters.set(rank, resolve));
    c.parts.set(rank, shard);
    if (c.parts.size === c.worldSize) this.complete(generation, step, c);
    return outcome;
  }

  /** A rank of `generation` died: its ring is broken for whoever waits in it now or later. */
  breakGeneration(generation: number, reason: string): void {
    if (!this.brokenGenerations.has(generation)) this.brokenGenerations.set(generation, reason);
    for (const [key, collective] of this.collectives) {
      if (!key.startsWith(`${generation}:`)) continue;
      collective.broken ??= reason;
      for (const resolve of collective.waiters.values()) resolve({ kind: 'broken', reason });
      collective.waiters.clear();
    }
  }

  /** Removes `rank` from the collective it waits in (an aborted collective on that rank). */
  withdraw(generation: number, rank: number, reason: string): void {
    for (const [key, collective] of this.collectives) {
      if (!key.startsWith(`${generation}:`)) continue;
      const resolve = collective.waiters.get(rank);
      if (resolve === undefined) continue;
      collective.waiters.delete(rank);
      resolve({ kind: 'broken', reason });
    }
  }

  private complete(generation: number, step: number, collective: Collective): void {
    const batch = [...collective.parts.values()];
    const sum = batch.reduce((total, shard) => total + shard.reduce((a, b) => a + b, 0), 0);
    const count = batch.reduce((total, shard) => total + shard.length, 0);
    const death = this.deathIn(generation, step);
    for (const [rank, resolve] of collective.waiters) {
      if (death !== undefined && !death.finishers.includes(rank)) continue;
      collective.waiters.delete(rank);
      resolve({ kind: 'done', sum, count });
    }
    death?.die();
  }
}
