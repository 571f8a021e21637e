// A full garbage collection on demand, for the one moment a worker knows it just dropped a lot:
// after loading its dataset (the raw samples and the parser's scratch, tens of MB, are garbage
// once the splits are copied out). Left to itself V8 collects them only under pressure, after the
// model and the first steps have been allocated on top — and that sum is the worker's peak RSS.
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let gc: (() => void) | undefined;

/**
 * Runs a full (major) collection on the next turn of the event loop: objects only weakly held
 * (WeakRef, like the mnist cache) stay alive until the current job ends. Costs tens of
 * milliseconds: call it at start-up, never per step.
 */
export async function collectGarbage(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (gc === undefined) {
    // --expose-gc makes V8 install gc() on contexts created afterwards, so a fresh one lends it.
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}
