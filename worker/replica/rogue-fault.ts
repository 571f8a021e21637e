// Fault injection for tests and drills: a worker that lies about its progress, as an attacker
// replacing the model would.
//
//   RINGTRAIN_FAULT_ROGUE_STEP="<step>"
//
// The worker's first Hello claims <step> finished steps (as if rejoining a restarted
// coordinator), and until it has run a step of its own, the state it exports holds that step
// with every parameter zero. The coordinator must refuse the claim (verified-rejoin.ts).
const spec = /^\d+$/.exec(process.env['RINGTRAIN_FAULT_ROGUE_STEP']?.trim() ?? '')?.[0];

/** The step this worker falsely claims, or undefined (no fault injected). */
export const rogueStep: number | undefined = spec === undefined ? undefined : Number(spec);
