// Image folders and text: real PNG/JPEG files decoded (jimp), resized and labelled by folder; a
// corrupt image named; text tokenised into windows for next-token or folder-labelled samples; an
// invalid UTF-8 file named with its byte offset.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import jpeg from '@jimp/js-jpeg';
import png from '@jimp/js-png';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadDataset } from '../../shared/data/dataset.js';
import { readImages } from '../../shared/data/image-source.js';
import { decodeUtf8, readText, tokenize } from '../../shared/data/text-source.js';
import { DatasetError } from '../../shared/errors.js';
import { resolveJob } from '../../shared/job.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ringtrain-images-text-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An RGBA bitmap of one colour. */
function solid(
  width: number,
  height: number,
  rgb: [number, number, number],
): { width: number; height: number; data: Buffer } {
  const data = Buffer.alloc(width * height * 4);
  for (let p = 0; p < width * height; p++) data.set([...rgb, 255], p * 4);
  return { width, height, data };
}

function put(file: string, bytes: Uint8Array | string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
  return file;
}

function datasetError(run: () => unknown): DatasetError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DatasetError);
    return error as DatasetError;
  }
  throw new Error('expected a DatasetError');
}

/** A folder with cats (red, 8×8 PNG and a 16×4 JPEG) and dogs (blue 4×4 PNG). */
/** A 2×2 image-folder spec over `root` with `channels` channels, no validation or test split. */
function imageSpec<C extends 1 | 3>(root: string, channels: C) {
  return {
    format: 'images' as const,
    path: root,
    shape: [2, 2, channels] as [number, number, C],
    split: { validation: 0, test: 0 },
    target: 'label' as const,
  };
}

function imageFolder(name: string): string {
  const root = path.join(dir, name);
  put(path.join(root, 'dogs', 'a.png'), png().encode(solid(4, 4, [0, 0, 255])));
  put(path.join(root, 'cats', 'b.png'), png().encode(solid(8, 8, [255, 0, 0])));
  put(path.join(root, 'cats', 'a.jpg'), Buffer.from(jpeg().encode(solid(16, 4, [255, 0, 0]), { quality: 100 })));
  put(path.join(root, 'cats', 'notes.md'), 'not an image: skipped');
  return root;
}

describe('image folders', () => {
  test('classes are the sorted folder names; every image resized to the shape, RGB in [0, 1]', () => {
    const root = imageFolder('rgb');
    const raw = readImages({
      format: 'images',
      path: root,
      shape: [2, 2, 3],
      split: { validation: 0, test: 0 },
      target: 'label',
    });
    expect(raw.count).toBe(3);
    expect(raw.featureSize).toBe(12);
    expect(raw.target).toMatchObject({ kind: 'classes', numClasses: 2, classNames: ['cats', 'dogs'] });
    expect(raw.target.kind === 'classes' ? Array.from(raw.target.classIndex) : []).toEqual([0, 0, 1]);
    const pixel = (sample: number): number[] => Array.from(raw.x.subarray(sample * 12, sample * 12 + 3));
    // cats/a.jpg, cats/b.png: red (JPEG within rounding); dogs/a.png: blue.
    expect(pixel(0).map((v) => Math.round(v * 10) / 10)).toEqual([1, 0, 0]);
    expect(pixel(1)).toEqual([1, 0, 0]);
    expect(pixel(2)).toEqual([0, 0, 1]);
  });

  test('channels 1 is grayscale; model.input is inferred from the shape', () => {
    const root = imageFolder('gray');
    const job = resolveJob(
      {
        data: { format: 'images', path: root, shape: [3, 3, 1], split: { validation: 0, test: 0 } },
        model: { layers: [{ type: 'flatten' }, { type: 'dense', units: 2, activation: 'softmax' }] },
        loss: 'categoricalCrossentropy',
        optimizer: { type: 'sgd', learningRate: 0.1 },
        training: { epochs: 1, batchSize: 2 },
      },
      'test job',
      {},
      dir,
    );
    expect(job.model.input).toEqual([3, 3, 1]);
    const ds = loadDataset(job);
    expect(ds.classNames).toEqual(['cats', 'dogs']);
    expect(ds.train.x.length).toBe(3 * 9);
    for (const v of ds.train.x) expect(v).toBeGreaterThan(0); // red and blue are not black in gray
    for (const v of ds.train.x) expect(v).toBeLessThan(1);
  });

  test('a corrupt image is one error naming the file', () => {
    const root = imageFolder('corrupt');
    const bad = put(
      path.join(root, 'dogs', 'broken.png'),
      Buffer.concat([
        png()
          .encode(solid(4, 4, [0, 0, 0]))
          .subarray(0, 40),
      ]),
    );
    const spec = imageSpec(root, 1);
    expect(datasetError(() => readImages(spec)).message).toMatch(
      new RegExp(`^${bad}: cannot be decoded \\(.+\\); replace or remove it$`),
    );
    const text = put(path.join(root, 'dogs', 'broken.png'), 'hello');
    expect(datasetError(() => readImages(spec)).message).toBe(
      `${text}: is not a PNG or JPEG image (by its first bytes); remove it or convert it`,
    );
  });

  test('a missing folder is an error naming it', () => {
    const root = path.join(dir, 'nowhere');
    const spec = imageSpec(root, 3);
    expect(datasetError(() => readImages(spec)).message).toBe(`${root}: no such file or folder`);
    expect(datasetError(() => readText({ ...TEXT_SPEC, path: root, window: 2 })).message).toBe(
      `${root}: no such file or folder`,
    );
  });

  test('one class, or an empty class folder, is an error naming the folder', () => {
    const root = path.join(dir, 'one');
    put(path.join(root, 'only', 'a.png'), png().encode(solid(2, 2, [1, 2, 3])));
    const spec = imageSpec(root, 3);
    expect(datasetError(() => readImages(spec)).message).toMatch(/holds 1 class folder; expected DIR\/<class>/);
    mkdirSync(path.join(root, 'empty'));
    expect(datasetError(() => readImages(spec)).message).toBe(
      `${path.join(root, 'empty')}: holds no .png or .jpg images`,
    );
  });
});

const TEXT_SPEC = {
  format: 'text' as const,
  tokens: 'chars' as const,
  task: 'nextToken' as const,
  split: { validation: 0, test: 0 },
};

describe('text', () => {
  test('characters: windows of `window` tokens, each labelled with the next token', () => {
    const file = put(path.join(dir, 'abc.txt'), 'abcab');
    const raw = readText({ ...TEXT_SPEC, path: file, window: 2 });
    // vocabulary: <unk>, then by frequency, ties by first appearance: a(2) b(2) c(1).
    expect(raw.vocabulary).toEqual(['<unk>', 'a', 'b', 'c']);
    expect(raw.count).toBe(3);
    expect(Array.from(raw.x)).toEqual([1, 2, 2, 3, 3, 1]);
    expect(raw.target.kind === 'classes' ? Array.from(raw.target.classIndex) : []).toEqual([3, 1, 2]);
    expect(raw.target).toMatchObject({ numClasses: 4, classNames: ['<unk>', 'a', 'b', 'c'] });
  });

  test('words, vocabularySize: the K most frequent, the rest unknown (0); stride steps windows', () => {
    expect(tokenize('The whale, the whale!', 'words')).toEqual(['The', 'whale', ',', 'the', 'whale', '!']);
    const file = put(path.join(dir, 'words.txt'), 'a b a c a b d');
    const raw = readText({ ...TEXT_SPEC, path: file, tokens: 'words', window: 3, vocabularySize: 2, stride: 2 });
    expect(raw.vocabulary).toEqual(['<unk>', 'a', 'b']);
    expect(Array.from(raw.x)).toEqual([1, 2, 1, 1, 0, 1]);
    expect(raw.target.kind === 'classes' ? Array.from(raw.target.classIndex) : []).toEqual([0, 2]);
  });

  test('classification: DIR/<label>/*.txt, windows labelled by folder, the last one padded with 0', () => {
    const root = path.join(dir, 'labelled');
    put(path.join(root, 'spam', 'x.txt'), 'aaaa');
    put(path.join(root, 'ham', 'y.txt'), 'bbb');
    const raw = readText({ ...TEXT_SPEC, path: root, task: 'classification', window: 3 });
    expect(raw.target).toMatchObject({ classNames: ['ham', 'spam'], numClasses: 2 });
    expect(raw.count).toBe(3); // ham: bbb; spam: aaa, a + padding
    expect(Array.from(raw.x)).toEqual([2, 2, 2, 1, 1, 1, 1, 0, 0]);
    expect(raw.target.kind === 'classes' ? Array.from(raw.target.classIndex) : []).toEqual([0, 1, 1]);
  });

  test('invalid UTF-8 names the file and the byte offset', () => {
    const bytes = Buffer.concat([Buffer.from('héllo '), Buffer.from([0xe9]), Buffer.from(' world')]);
    const file = put(path.join(dir, 'latin1.txt'), bytes);
    expect(datasetError(() => readText({ ...TEXT_SPEC, path: file, window: 2 })).message).toBe(
      `${file}: is not valid UTF-8 (byte offset 7: 0xe9); convert it to UTF-8, e.g. iconv -f latin1 -t utf-8`,
    );
    // A truncated sequence at the very end, and a valid file with a BOM.
    expect(datasetError(() => decodeUtf8('t.txt', Buffer.from([0x61, 0xe2, 0x82]))).message).toMatch(
      /byte offset 1: 0xe2/,
    );
    expect(decodeUtf8('bom.txt', Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).toBe('a');
  });

  test('text shorter than one window and its next token is an error', () => {
    const file = put(path.join(dir, 'short.txt'), 'ab');
    expect(datasetError(() => readText({ ...TEXT_SPEC, path: file, window: 2 })).message).toMatch(/lower data\.window/);
  });
});
