// The ringtrain image the container tests run, built once per test file from deploy/Dockerfile.
// Default: offline, from this machine's node (deploy/scripts/build-local-base.sh) and the host's
// dist/ + production node_modules (deploy/scripts/stage-prebuilt.sh, PREBUILT=1).
// RINGTRAIN_E2E_IMAGE=<tag> uses an image that is already built; RINGTRAIN_E2E_NODE_IMAGE=<image>
// builds the registry way (`npm ci` inside the build) from that base instead.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GenericContainer } from 'testcontainers';

const execFileAsync = promisify(execFile);

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const LOCAL_BASE_IMAGE = 'ringtrain-base:local';
export const E2E_IMAGE = 'ringtrain:e2e';

/** Runs a deploy script, returning its output; a failure carries the script's stderr. */
async function runScript(script: string, args: readonly string[] = []): Promise<string> {
  try {
    const { stdout } = await execFileAsync(path.join(REPO_ROOT, 'deploy/scripts', script), args, {
      cwd: REPO_ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (cause) {
    const stderr = (cause as { stderr?: string }).stderr ?? '';
    throw new Error(`deploy/scripts/${script} failed: ${stderr.trim()}`, { cause });
  }
}

/** Builds (or names) the image; returns its tag. Expects `npm run build` to have run. */
export async function ringtrainImage(): Promise<string> {
  const prebuilt = process.env['RINGTRAIN_E2E_IMAGE'];
  if (prebuilt !== undefined && prebuilt !== '') return prebuilt;
  const registryBase = process.env['RINGTRAIN_E2E_NODE_IMAGE'];
  const offline = registryBase === undefined || registryBase === '';
  if (offline) {
    await runScript('build-local-base.sh', [LOCAL_BASE_IMAGE]);
    await runScript('stage-prebuilt.sh', ['--no-build']);
  }
  await GenericContainer.fromDockerfile(REPO_ROOT, 'deploy/Dockerfile')
    .withBuildArgs({ NODE_IMAGE: offline ? LOCAL_BASE_IMAGE : registryBase, PREBUILT: offline ? '1' : '0' })
    .build(E2E_IMAGE, { deleteOnExit: false });
  return E2E_IMAGE;
}
