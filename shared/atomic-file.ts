// Crash-safe file replacement. Invariant: a reader of `file` sees either its old complete
// content or the new complete content, never a prefix, whatever moment the process dies at.
// The recipe is the classic one: write a sibling temp file, fsync it, rename it over the
// target (atomic within one filesystem on POSIX), then fsync the directory so the rename
// itself survives a power cut. A crash before the rename leaves only an ignorable temp file.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { isDirectorySyncRefused, isNotFound, isPermissionRefused } from './errors.js';

/** Marker between a target's base name and the writer's pid in temp names. */
const TEMP_MARKER = '.tmp-';
/** Marker of a directory set aside by replaceDirAtomic until its replacement is in place. */
const OLD_MARKER = '.old-';

/** `<file>.tmp-<pid>-<rand>`: unique per writer, so concurrent writers never share a temp. */
export function tempPathFor(file: string): string {
  return `${file}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Write to `<file>.tmp-<pid>-<rand>`, fsync, rename over `file`, fsync the directory. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const temp = tempPathFor(file);
  try {
    const handle = await fsp.open(temp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(path.dirname(file));
}

/** Synchronous twin of writeFileAtomic, for exit paths where nothing may be awaited. */
export function writeFileAtomicSync(file: string, data: Uint8Array | string): void {
  const temp = tempPathFor(file);
  try {
    const fd = fs.openSync(temp, 'wx');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (error) {
    fs.rmSync(temp, { force: true });
    throw error;
  }
  fsyncDirSync(path.dirname(file));
}

/** fsync a directory (ignore EINVAL/EPERM on filesystems that refuse it). */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (error) {
    if (!isDirectorySyncRefused(error)) throw error;
  } finally {
    await handle?.close();
  }
}

export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (error) {
    if (!isDirectorySyncRefused(error)) throw error;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Writes `data` to a new file (which must not exist) and fsyncs it; no rename. */
export async function writeFileDurable(file: string, data: Uint8Array | string): Promise<void> {
  const handle = await fsp.open(file, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Removes temp files left next to `file` by writers that died before their rename.
 * Temps of live processes (this one included) are kept: they may be mid-write.
 * Returns the paths removed.
 */
export async function removeStaleTemps(file: string): Promise<string[]> {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}${TEMP_MARKER}`;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number.parseInt(name.slice(prefix.length), 10);
    if (Number.isInteger(pid) && isProcessAlive(pid)) continue;
    const stale = path.join(dir, name);
    await fsp.rm(stale, { force: true, recursive: true });
    removed.push(stale);
  }
  return removed;
}

/** True while a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function isProcessAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isPermissionRefused(error);
  }
}

/**
 * Replaces directory `dir` with one holding exactly `files` (plain names, no subfolders).
 * The new tree is written and fsynced in `<dir>.tmp-<pid>-<rand>`. POSIX cannot rename a
 * directory over a non-empty one, so the old tree is first renamed to `<dir>.old-<pid>-<rand>`,
 * the new one renamed in, and only then the old one deleted: during that short gap the old
 * complete tree lives under `.old-*`, and restoreReplacedDir puts it back after a crash.
 * Not safe for two concurrent replacements of the same `dir`.
 */
export async function replaceDirAtomic(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const temp = tempPathFor(dir);
  try {
    await fsp.mkdir(temp);
    for (const [name, data] of Object.entries(files)) {
      await writeFileDurable(path.join(temp, checkPlainName(name)), data);
    }
    await fsyncDir(temp);
  } catch (error) {
    await fsp.rm(temp, { force: true, recursive: true });
    throw error;
  }
  await restoreReplacedDir(dir);
  const aside = `${dir}${OLD_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`;
  const hadOld = await renameIfExists(dir, aside);
  try {
    await fsp.rename(temp, dir);
  } catch (error) {
    if (hadOld) await fsp.rename(aside, dir);
    await fsp.rm(temp, { force: true, recursive: true });
    throw error;
  }
  await fsyncDir(path.dirname(dir));
  if (hadOld) await fsp.rm(aside, { force: true, recursive: true });
}

/**
 * Repairs what a crash inside replaceDirAtomic can leave: with `dir` missing, the set-aside
 * old tree is renamed back; leftover temp and set-aside trees of dead writers are deleted.
 */
export async function restoreReplacedDir(dir: string): Promise<void> {
  const parent = path.dirname(dir);
  const oldPrefix = `${path.basename(dir)}${OLD_MARKER}`;
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch (error) {
    if (isNotFound(error)) return;
    throw error;
  }
  for (const name of names.filter((n) => n.startsWith(oldPrefix)).sort()) {
    if (isProcessAlive(Number.parseInt(name.slice(oldPrefix.length), 10))) continue;
    const aside = path.join(parent, name);
    if (fs.existsSync(dir)) await fsp.rm(aside, { force: true, recursive: true });
    else await fsp.rename(aside, dir);
  }
  await removeStaleTemps(dir);
  await fsyncDir(parent);
}

async function renameIfExists(from: string, to: string): Promise<boolean> {
  try {
    await fsp.rename(from, to);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

function checkPlainName(name: string): string {
  if (name === '' || name === '.' || name === '..' || name !== path.basename(name) || name.includes('\\')) {
    throw new Error(`not a plain file name: "${name}"`);
  }
  return name;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
