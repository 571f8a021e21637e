// Fault injection for tests and drills: a worker that dies in the middle of an evaluation.
//
//   RINGTRAIN_FAULT_KILL_AT_EVAL="<split>@<step>:<token file>"
//
// The first worker that receives an evaluation order of <split> after completing <step> steps
// while <token file> exists removes that file and SIGKILLs itself, before answering. unlink()
// succeeds for exactly one process, so the fault fires once per job, whichever rank gets there
// first, and never again in the replacement that inherits the same environment.
import * as fs from 'node:fs';

interface EvalFault {
  split: string;
  step: number;
  token: string;
}

const SPEC = /^(train|validation|test)@(\d+):(.+)$/;

export function parseEvalFault(spec: string | undefined): EvalFault | undefined {
  const match = spec === undefined ? null : SPEC.exec(spec.trim());
  if (match === null) return undefined;
  return { split: match[1] ?? '', step: Number(match[2]), token: match[3] ?? '' };
}

const fault = parseEvalFault(process.env['RINGTRAIN_FAULT_KILL_AT_EVAL']);

/** Dies here (SIGKILL, like a crash) when the injected fault matches this evaluation order. */
export function dieIfEvalFault(split: string, completedSteps: number): void {
  if (fault === undefined || fault.split !== split || fault.step !== completedSteps) return;
  try {
    fs.unlinkSync(fault.token);
  } catch {
    return; // already fired in another process
  }
  process.kill(process.pid, 'SIGKILL');
}
