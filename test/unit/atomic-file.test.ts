import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  fsyncDir,
  removeStaleTemps,
  replaceDirAtomic,
  restoreReplacedDir,
  sha256Hex,
  writeFileAtomic,
  writeFileAtomicSync,
} from '../../shared/atomic-file.js';

/** Larger than Linux's pid_max (2^22), so no live process can own it. */
const DEAD_PID = 99_999_999;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringtrain-atomic-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('writes and replaces the content, leaving no temp files', async () => {
    const file = path.join(dir, 'summary.json');
    await writeFileAtomic(file, 'old');
    await writeFileAtomic(file, new Uint8Array([110, 101, 119]));
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(fs.readdirSync(dir)).toEqual(['summary.json']);
  });

  it('has a synchronous twin with the same result', () => {
    const file = path.join(dir, 'job.yaml');
    writeFileAtomicSync(file, 'a: 1\n');
    writeFileAtomicSync(file, 'a: 2\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('a: 2\n');
    expect(fs.readdirSync(dir)).toEqual(['job.yaml']);
  });

  it('rejects when the folder is missing and leaves nothing behind', async () => {
    await expect(writeFileAtomic(path.join(dir, 'missing', 'f'), 'x')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('after a crash before the rename, the old content is intact and the dead temp is cleaned', async () => {
    const file = path.join(dir, 'summary.json');
    await writeFileAtomic(file, '{"complete":true}');
    const deadTemp = `${file}.tmp-${DEAD_PID}-deadbeef`;
    const liveTemp = `${file}.tmp-${process.pid}-cafebabe`;
    fs.writeFileSync(deadTemp, '{"compl');
    fs.writeFileSync(liveTemp, '{"in-fl');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ complete: true });
    expect(await removeStaleTemps(file)).toEqual([deadTemp]);
    expect(fs.readdirSync(dir).sort()).toEqual(['summary.json', path.basename(liveTemp)]);
  });
});

describe('replaceDirAtomic', () => {
  it('swaps a whole directory, dropping files the new one lacks', async () => {
    const model = path.join(dir, 'model');
    await replaceDirAtomic(model, { 'model.json': '{"v":1}', 'weights.bin': new Uint8Array([1, 2]) });
    await replaceDirAtomic(model, { 'model.json': '{"v":2}' });
    expect(fs.readdirSync(model)).toEqual(['model.json']);
    expect(fs.readFileSync(path.join(model, 'model.json'), 'utf8')).toBe('{"v":2}');
    expect(fs.readdirSync(dir)).toEqual(['model']);
  });

  it('refuses file names that are paths', async () => {
    await expect(replaceDirAtomic(path.join(dir, 'model'), { '../escape': 'x' })).rejects.toThrow(
      /not a plain file name/,
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('restores the set-aside tree after a crash between the two renames', async () => {
    const model = path.join(dir, 'model');
    await replaceDirAtomic(model, { 'model.json': 'old' });
    fs.renameSync(model, `${model}.old-${DEAD_PID}-0123abcd`);
    fs.mkdirSync(`${model}.tmp-${DEAD_PID}-4567abcd`);
    fs.writeFileSync(`${model}.tmp-${DEAD_PID}-4567abcd/model.json`, 'ne');
    await restoreReplacedDir(model);
    expect(fs.readdirSync(dir)).toEqual(['model']);
    expect(fs.readFileSync(path.join(model, 'model.json'), 'utf8')).toBe('old');
  });
});

describe('helpers', () => {
  it('sha256Hex matches the FIPS 180-2 "abc" vector', () => {
    expect(sha256Hex(new TextEncoder().encode('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('fsyncDir accepts a directory and rejects a missing one', async () => {
    await expect(fsyncDir(dir)).resolves.toBeUndefined();
    await expect(fsyncDir(path.join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
