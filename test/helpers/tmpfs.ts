// A small real filesystem for disk-full tests: a tmpfs of a given size, mounted on a fresh temp
// dir. Mounting needs root (CI and the dev VM run as root); where it is refused, tests skip with
// the reason instead of faking ENOSPC.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Tmpfs {
  dir: string;
  /** Unmounts and removes the mount point (idempotent). */
  remove: () => void;
}

/** Mounts a tmpfs of `bytes` (rounded up to pages by the kernel) on a new temp dir. */
export function mountTmpfs(bytes: number): Tmpfs {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtrain-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let mounted = true;
  return {
    dir,
    remove: () => {
      if (mounted) execFileSync('umount', [dir], { stdio: 'pipe' });
      mounted = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Why a tmpfs cannot be mounted here (tests skip on it), or undefined when it can. */
export const tmpfsUnavailable: string | undefined = (() => {
  try {
    mountTmpfs(64 * 1024).remove();
    return undefined;
  } catch (error) {
    const reason = `cannot mount a tmpfs here (${error instanceof Error ? error.message.split('\n')[0] : String(error)}); disk-full tests skipped`;
    process.stderr.write(`${reason}\n`);
    return reason;
  }
})();
