// The ringtrain version, read from package.json: the one place it is written. Found by walking up
// from this module, which sits at shared/ when run from source and dist/shared/ when built.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The `version` of ringtrain's package.json ("0.0.0" only if the package file is missing). */
export function ringtrainVersion(): string {
  cached ??= findVersion(path.dirname(fileURLToPath(import.meta.url)));
  return cached;
}

function findVersion(start: string): string {
  for (let dir = start, depth = 0; depth < 6; dir = path.dirname(dir), depth++) {
    let text: string;
    try {
      text = readFileSync(path.join(dir, 'package.json'), 'utf8');
    } catch {
      continue;
    }
    const pkg = JSON.parse(text) as { name?: unknown; version?: unknown };
    if (pkg.name === 'ringtrain' && typeof pkg.version === 'string') return pkg.version;
  }
  return '0.0.0';
}
