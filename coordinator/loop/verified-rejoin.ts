// Which rejoining worker's in-memory state a restarted coordinator may continue from. A worker's
// Hello only claims a step; the claim is believed when the state it sends proves it:
//   - its parameter hash equals the hash recorded for that step (in cluster mode rank 0 reports
//     one every step, and metrics.jsonl keeps it as `paramHash`), or
//   - the step is at most ORDERED_AHEAD past the newest recorded one of this run (the steps the
//     coordinator had already ordered when it died, which the workers finished without it) and
//     at least two rejoining workers hold bit-identical parameters at it.
// Anything else (an unknown step, a hash that matches nothing, a state that does not decode or
// whose cursor differs from the claim, a worker that does not answer) is refused, with the
// reason in the events, and the run continues from the newest checkpoint (or step 0).
//
// Invariants: no claimed state is broadcast before it is verified; every refusal names the rank
// and why. What this cannot verify: optimizer slots (only parameters are hashed).
import { decodeTrainState } from '../../shared/train-state.js';
import { hashParams } from '../../shared/param-hash.js';
import { readMetrics } from '../run/run-directory.js';
import type { ResumeContext } from './resume-state.js';
import type { Generation, RingMember } from './membership.js';

/**
 * How many steps the workers can be ahead of the newest record: while step s is settled the
 * training loop has already sent the order of s + 1 (training-loop.ts), so a coordinator that
 * dies right after recording s − 1 leaves workers that go on to finish s and s + 1.
 */
const ORDERED_AHEAD = 2;

export interface VerifiedState {
  member: RingMember;
  /** Steps the state holds (its cursor). */
  step: number;
  state: Buffer;
  /** How it was verified, for the event. */
  verifiedBy: string;
}

/**
 * The newest verified state among the members that claim more than `checkpointStep` steps, or
 * undefined (each refused claim recorded as an event).
 */
export async function verifiedVeteran(
  ctx: ResumeContext,
  generation: Generation,
  checkpointStep: number,
): Promise<VerifiedState | undefined> {
  const claimants = generation.members
    .filter((m) => m.session.hello.jobHash === ctx.jobHash && m.session.hello.completedSteps > checkpointStep)
    .sort((a, b) => b.session.hello.completedSteps - a.session.hello.completedSteps);
  if (claimants.length === 0) return undefined;
  const recorded = recordedParamHashes(ctx.runDir.metricsFile);
  const newestRecorded = Math.max(0, ...recorded.keys());
  const steps = [...new Set(claimants.map((m) => m.session.hello.completedSteps))];
  for (const step of steps) {
    const fetched: Array<{ member: RingMember; state: Buffer; hash: string }> = [];
    for (const member of claimants.filter((m) => m.session.hello.completedSteps === step)) {
      const proof = await fetchProof(ctx, member, step);
      if (typeof proof === 'string') {
        refuse(ctx, member, step, proof);
        continue;
      }
      if (recorded.get(step)?.has(proof.hash) === true)
        return { member, step, state: proof.state, verifiedBy: `parameter hash ${proof.hash} as recorded` };
      fetched.push({ member, ...proof });
    }
    const agreeing = fetched.filter((f) => f.hash === fetched[0]?.hash);
    const first = agreeing[0];
    const followsRecord = recorded.size > 0 && step > newestRecorded && step <= newestRecorded + ORDERED_AHEAD;
    if (followsRecord && first !== undefined && agreeing.length >= 2 && agreeing.length === fetched.length)
      return {
        member: first.member,
        step,
        state: first.state,
        verifiedBy: `${agreeing.length} rejoining workers agree on parameter hash ${first.hash}, ${step - newestRecorded} step(s) past the record`,
      };
    for (const f of fetched)
      refuse(
        ctx,
        f.member,
        step,
        recorded.has(step)
          ? `its parameter hash ${f.hash} differs from the one recorded for step ${step}`
          : followsRecord
            ? 'no record for that step yet, and no second rejoining worker holds the same parameters'
            : `no parameter hash is recorded for step ${step} (the newest recorded step is ${newestRecorded})`,
      );
  }
  return undefined;
}

/** The member's state and its parameter hash, or why it proves nothing. */
async function fetchProof(
  ctx: ResumeContext,
  member: RingMember,
  step: number,
): Promise<{ state: Buffer; hash: string } | string> {
  try {
    const state = await member.session.fetchBlob(ctx.nextRequestId(), 'state', ctx.stateTimeoutMs);
    const decoded = decodeTrainState(state, `the state of rank ${member.rank}`);
    if (decoded.cursor.step !== step) return `its state holds ${decoded.cursor.step} steps, not the ${step} it claimed`;
    return { state, hash: hashParams(decoded.params) };
  } catch (error) {
    return `its state could not be read: ${error instanceof Error ? error.message : String(error)}`;
  }
}

function refuse(ctx: ResumeContext, member: RingMember, step: number, why: string): void {
  const { host, pid } = member.session.hello;
  const detail = `not continuing from the state rank ${member.rank} (${host} pid ${pid}) claims at step ${step}: ${why}`;
  ctx.events.record('rejoin-refused', member.rank, step, detail);
  ctx.reporter.note(detail);
}

/** Completed steps -> the parameter hashes recorded after them (a step re-run after a regroup may add one). */
export function recordedParamHashes(metricsFile: string): Map<number, Set<string>> {
  const hashes = new Map<number, Set<string>>();
  for (const record of readMetrics(metricsFile)) {
    const hash = record['paramHash'];
    if (record['type'] !== 'step' || typeof hash !== 'string' || hash === '') continue;
    const completed = Number(record['step']) + 1;
    const set = hashes.get(completed) ?? new Set<string>();
    set.add(hash);
    hashes.set(completed, set);
  }
  return hashes;
}
