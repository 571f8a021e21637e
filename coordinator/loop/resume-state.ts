// The state a run starts from: step 0, the newest valid checkpoint (--resume), or the in-memory
// state of a rejoining worker when that is newer and verified (workers keep their replica when a
// coordinator dies, and reconnect to its successor; verified-rejoin.ts says what is believed). Loads it into every rank of the first generation; a new
// run of a model written in code starts every rank from rank 0's initial state.
import type { CheckpointStore } from '../run/checkpoint-store.js';
import type { EventLog } from '../run/event-log.js';
import type { ProgressReporter } from '../run/progress-reporter.js';
import { readMetrics, type RunDirectory } from '../run/run-directory.js';
import type { EarlyStopping } from './early-stopping.js';
import type { Generation, RingMember } from './membership.js';
import { verifiedVeteran } from './verified-rejoin.js';

export interface ResumeContext {
  /** The run directory being resumed (`--resume`); undefined for a new run. */
  resumeDir: string | undefined;
  jobHash: string;
  checkpoints: CheckpointStore;
  runDir: RunDirectory;
  reporter: ProgressReporter;
  events: EventLog;
  nextRequestId: () => number;
  /** How long a rank may take to send or load a state (the run's step timeout). */
  stateTimeoutMs: number;
  /**
   * A new run starts from rank 0's initial state on every rank: for models whose initialisation
   * ringtrain cannot seed (`model.module`). @default false
   */
  broadcastInitialState?: boolean;
}

/** Loads the most advanced state into every rank and returns the step to start at. */
export async function restoreState(
  ctx: ResumeContext,
  generation: Generation,
  earlyStopping: EarlyStopping | undefined,
): Promise<number> {
  const latest = ctx.resumeDir === undefined ? undefined : await ctx.checkpoints.loadLatestValid();
  for (const warning of latest?.warnings ?? []) {
    ctx.reporter.note(`warning: ${warning}`);
    ctx.events.record('checkpoint-fallback', -1, latest?.info.step ?? 0, warning);
  }
  const esState = latest?.info.extra?.['earlyStopping'];
  if (earlyStopping !== undefined && esState !== null && typeof esState === 'object')
    earlyStopping.importState(esState as Record<string, number>);
  const checkpointStep = latest?.info.step ?? 0;
  const veteran = await verifiedVeteran(ctx, generation, checkpointStep);
  if (veteran !== undefined) {
    const { member, step, state } = veteran;
    await broadcastState(generation, state, member, ctx.nextRequestId(), ctx.stateTimeoutMs);
    ctx.events.record(
      'recovery',
      member.rank,
      step,
      `continuing from the in-memory state of rank ${member.rank} (step ${step}, ${veteran.verifiedBy}), newer than the checkpoint (step ${checkpointStep})`,
    );
    ctx.reporter.note(`resumed from the in-memory state of a rejoining worker at step ${step}`);
    logUnrecordedSteps(ctx.runDir, step);
    return step;
  }
  if (latest === undefined) {
    if (ctx.resumeDir !== undefined) ctx.reporter.note('no valid checkpoint to resume from; starting from step 0');
    const first = generation.members[0];
    if (ctx.broadcastInitialState === true && first !== undefined && generation.members.length > 1) {
      const state = await first.session.fetchBlob(ctx.nextRequestId(), 'state', ctx.stateTimeoutMs);
      await broadcastState(generation, state, first, ctx.nextRequestId(), ctx.stateTimeoutMs);
    }
    return 0;
  }
  await broadcastState(generation, latest.state, undefined, ctx.nextRequestId(), ctx.stateTimeoutMs);
  ctx.reporter.note(`resumed from checkpoint ${latest.info.dir}`);
  return latest.info.step;
}

/** Steps the workers finished while no coordinator recorded them still get their line (without a loss). */
function logUnrecordedSteps(runDir: RunDirectory, upTo: number): void {
  const logged = new Set(
    readMetrics(runDir.metricsFile)
      .filter((r) => r['type'] === 'step')
      .map((r) => Number(r['step'])),
  );
  for (let step = 0; step < upTo; step++)
    if (!logged.has(step))
      runDir.appendMetrics({
        type: 'step',
        step,
        unrecorded: 'finished by the workers while the coordinator was down',
      });
}

/** Sends one encoded training state to every member (but `except`) and waits until each has loaded it. */
export async function broadcastState(
  generation: Generation,
  state: Uint8Array,
  except: RingMember | undefined,
  requestId: number,
  timeoutMs: number,
): Promise<void> {
  const targets = generation.members.filter((m) => m !== except);
  for (const member of targets) member.session.sendState(requestId, state);
  await Promise.all(targets.map((m) => m.session.waitAck(requestId, timeoutMs)));
}
