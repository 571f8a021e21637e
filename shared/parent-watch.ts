// Embedded workers must not outlive the coordinator that spawned them, whatever killed it
// (SIGKILL included, which runs no exit handler). The coordinator gives each worker a stdin pipe
// and never writes to it; the kernel closes it when the coordinator dies, so the worker sees EOF
// at once, wherever it is (still loading, dialling, training), with no polling.
//
// Importing this module with `--exit-with-parent` among the arguments starts the watch. Spawners
// preload it (`node --import <this module>`, see parentWatchPreload), so the watch runs before
// Node even parses the CLI's large module graph (tfjs), and a worker whose coordinator dies
// while it is still loading leaves at once too.

import { stderrPrefixed } from './stderr-prefix.js';

/** Exit code of a worker whose launching coordinator died (as when it cannot reach one). */
const PARENT_GONE_EXIT_CODE = 5;
export const EXIT_WITH_PARENT_FLAG = '--exit-with-parent';

/** Node flags that start the watch before anything else loads in a spawned worker. */
export function parentWatchPreload(): string[] {
  return ['--import', import.meta.url];
}

let watching = false;

/** Exits this process as soon as its stdin reaches EOF or breaks. Idempotent. */
export function exitWithParent(): void {
  if (watching) return;
  watching = true;
  const leave = (): void => {
    process.stderr.write(stderrPrefixed('ringtrain: the coordinator that started this worker is gone; exiting\n'));
    process.exit(PARENT_GONE_EXIT_CODE);
  };
  process.stdin.once('end', leave);
  process.stdin.once('close', leave);
  process.stdin.once('error', leave);
  process.stdin.resume();
}

if (process.argv.includes(EXIT_WITH_PARENT_FLAG)) exitWithParent();
