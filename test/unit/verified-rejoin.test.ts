// Which rejoining worker's claimed state a restarted coordinator believes: real encoded states
// and a real metrics.jsonl; the worker links are stand-ins that answer a state request.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifiedVeteran } from '../../coordinator/loop/verified-rejoin.js';
import type { ResumeContext } from '../../coordinator/loop/resume-state.js';
import type { Generation, RingMember } from '../../coordinator/loop/membership.js';
import { EventLog } from '../../coordinator/run/event-log.js';
import { componentLogger } from '../../shared/logger.js';
import { hashParams } from '../../shared/param-hash.js';
import { encodeTrainState } from '../../shared/train-state.js';
import { tempDir } from '../helpers/cli.js';

const JOB_HASH = 'job-1';
const paramsAt = (step: number): Float32Array => new Float32Array([step, step / 2, -step]);

function state(step: number, params = paramsAt(step)): Buffer {
  return Buffer.from(
    encodeTrainState({
      cursor: { step, epoch: 0, batchInEpoch: step },
      params,
      nonTrainable: new Float32Array(0),
      optimizer: { type: 'sgd', step, slots: {} },
    }),
  );
}

function member(rank: number, claimed: number, blob: Buffer): RingMember {
  const session = {
    hello: { jobHash: JOB_HASH, completedSteps: claimed, host: `h${rank}`, pid: 100 + rank },
    fetchBlob: () => Promise.resolve(blob),
  };
  return { session, rank, paramCount: 3, backend: 'cpu' } as unknown as RingMember;
}

/** A context whose metrics.jsonl recorded rank 0's hash after steps [0, recordedSteps). */
function context(recordedSteps: number): { ctx: ResumeContext; events: EventLog; notes: string[] } {
  const dir = tempDir('ringtrain-rejoin-');
  const metricsFile = path.join(dir, 'metrics.jsonl');
  const lines = Array.from({ length: recordedSteps }, (_, step) =>
    JSON.stringify({ type: 'step', step, paramHash: hashParams(paramsAt(step + 1)) }),
  );
  writeFileSync(metricsFile, lines.map((l) => `${l}\n`).join(''));
  const events = new EventLog(componentLogger('test'));
  const notes: string[] = [];
  let requestId = 1;
  const ctx = {
    jobHash: JOB_HASH,
    runDir: { metricsFile },
    events,
    reporter: { note: (text: string) => notes.push(text) },
    nextRequestId: () => requestId++,
    stateTimeoutMs: 1_000,
  } as unknown as ResumeContext;
  return { ctx, events, notes };
}

const generation = (members: RingMember[]): Generation => ({ generation: 1, members, paramCount: 3 });

describe('verifiedVeteran', () => {
  it('believes a state whose parameter hash is the one recorded for its step', async () => {
    const { ctx } = context(40);
    const found = await verifiedVeteran(ctx, generation([member(0, 30, state(30))]), 0);
    expect(found?.step).toBe(30);
    expect(found?.verifiedBy).toMatch(/as recorded/);
  });

  it('refuses a claimed step whose state differs from the record, naming why, and falls back', async () => {
    const { ctx, events, notes } = context(40);
    const zeroed = state(30, new Float32Array(3));
    expect(await verifiedVeteran(ctx, generation([member(1, 30, zeroed)]), 0)).toBeUndefined();
    expect(events.events.map((e) => [e.kind, e.rank, e.step])).toEqual([['rejoin-refused', 1, 30]]);
    expect(notes[0]).toMatch(/rank 1 \(h1 pid 101\) claims at step 30: its parameter hash \w+ differs/);
  });

  it('refuses a step nobody recorded, and a state whose cursor is not the claim', async () => {
    const { ctx, events } = context(40);
    expect(await verifiedVeteran(ctx, generation([member(0, 186, state(186))]), 0)).toBeUndefined();
    expect(await verifiedVeteran(ctx, generation([member(0, 30, state(29))]), 0)).toBeUndefined();
    expect(events.events.map((e) => e.detail)).toEqual([
      expect.stringMatching(/no parameter hash is recorded for step 186/),
      expect.stringMatching(/its state holds 29 steps, not the 30 it claimed/),
    ]);
  });

  it('believes the steps ordered before the coordinator died only when two workers agree on them', async () => {
    const { ctx } = context(40);
    const agreeing = [member(0, 42, state(42)), member(1, 42, state(42))];
    expect((await verifiedVeteran(ctx, generation(agreeing), 0))?.verifiedBy).toMatch(/2 rejoining workers agree/);
    const alone = [member(0, 42, state(42))];
    expect(await verifiedVeteran(ctx, generation(alone), 0)).toBeUndefined();
    const disagreeing = [member(0, 42, state(42)), member(1, 42, state(42, new Float32Array(3)))];
    expect(await verifiedVeteran(ctx, generation(disagreeing), 0)).toBeUndefined();
    const tooFar = [member(0, 43, state(43)), member(1, 43, state(43))];
    expect(await verifiedVeteran(ctx, generation(tooFar), 0)).toBeUndefined();
  });

  it('believes no agreement in a run with no record at all (a new run)', async () => {
    const { ctx } = context(0);
    const colluding = [member(0, 1, state(1)), member(1, 1, state(1))];
    expect(await verifiedVeteran(ctx, generation(colluding), 0)).toBeUndefined();
  });

  it('falls back to a lower verified claim when the newest is refused', async () => {
    const { ctx } = context(40);
    const members = [member(0, 186, state(186)), member(1, 35, state(35))];
    const found = await verifiedVeteran(ctx, generation(members), 0);
    expect(found?.member.rank).toBe(1);
    expect(found?.step).toBe(35);
  });
});
