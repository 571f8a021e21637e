// Reads an image folder: DIR/<class>/*.png|jpg|jpeg, one class per sub-folder (classes sorted by
// name, files sorted by name within each), every image decoded, resized to the job's
// [height, width, channels] and scaled to [0, 1] (channels 1: grayscale, 3: RGB; alpha dropped).
//
// Decoding is synchronous, as loadDataset is: jimp's own PNG and JPEG decoders (@jimp/js-png,
// @jimp/js-jpeg) are plain functions over a buffer, and jimp's resize and greyscale are
// synchronous too; only jimp's read/fromBuffer are async (for file-type sniffing, which is done
// here from the magic bytes). No child process, no event-loop tricks.
// JPEG EXIF orientation is not applied: an image is read as its pixels are stored.
import { readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import jpeg from '@jimp/js-jpeg';
import png from '@jimp/js-png';
import { Jimp } from 'jimp';
import { DatasetError, describeReadFailure } from '../errors.js';
import type { DataSpec } from '../job-schema.js';
import { compareCodeUnits } from './column-encoding.js';
import { readDataFile } from './read-data-file.js';
import type { RawSamples } from './raw-samples.js';

type ImagesSpec = Extract<DataSpec, { format: 'images' }>;

const IMAGE_FILE = /\.(png|jpe?g)$/i;
const PNG_DECODER = png();
const JPEG_DECODER = jpeg();

export function readImages(spec: ImagesSpec): RawSamples {
  const [height, width, channels] = spec.shape;
  const classes = listDir(spec.path).filter((name) => isDirectory(path.join(spec.path, name)));
  const files = classes.map((name) =>
    listDir(path.join(spec.path, name))
      .filter((file) => IMAGE_FILE.test(file))
      .map((file) => path.join(spec.path, name, file)),
  );
  const empty = classes.findIndex((_, c) => (files[c] ?? []).length === 0);
  if (empty >= 0)
    throw new DatasetError(path.join(spec.path, classes[empty] as string), 'holds no .png or .jpg images');
  if (classes.length < 2)
    throw new DatasetError(
      spec.path,
      `holds ${classes.length} class folder${classes.length === 1 ? '' : 's'}; expected DIR/<class>/*.png|jpg with at least two classes`,
    );
  const count = files.reduce((n, list) => n + list.length, 0);
  const featureSize = height * width * channels;
  const x = new Float32Array(count * featureSize);
  const classIndex = new Uint32Array(count);
  let sample = 0;
  files.forEach((list, c) => {
    for (const file of list) {
      decodeInto(file, spec.shape, x.subarray(sample * featureSize, (sample + 1) * featureSize));
      classIndex[sample++] = c;
    }
  });
  return {
    file: spec.path,
    count,
    featureSize,
    x,
    target: { kind: 'classes', classIndex, numClasses: classes.length, classNames: classes },
  };
}

/** Decodes `file`, resizes it to `shape` and writes its pixels in [0, 1], row-major HWC, into `out`. */
export function decodeInto(file: string, shape: readonly [number, number, 1 | 3], out: Float32Array): void {
  const [height, width, channels] = shape;
  const bytes = readDataFile(file);
  const decoder = isPng(bytes) ? PNG_DECODER : isJpeg(bytes) ? JPEG_DECODER : undefined;
  if (decoder === undefined)
    throw new DatasetError(file, 'is not a PNG or JPEG image (by its first bytes); remove it or convert it');
  let image: JimpImage;
  try {
    image = Jimp.fromBitmap(decoder.decode(bytes, {})) as JimpImage;
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new DatasetError(file, `cannot be decoded (${why}); replace or remove it`, undefined, { cause });
  }
  if (image.width !== width || image.height !== height) image.resize({ w: width, h: height });
  if (channels === 1) image.greyscale();
  const rgba = image.bitmap.data;
  if (rgba.length !== height * width * 4)
    throw new Error(`jimp resized ${file} to ${rgba.length} bytes, not ${height}×${width}×4`);
  for (let p = 0; p < height * width; p++)
    for (let ch = 0; ch < channels; ch++) out[p * channels + ch] = (rgba[p * 4 + ch] as number) / 255;
}

/** The part of a jimp image used here (jimp's declared types resolve to any under this project's settings). */
interface JimpImage {
  width: number;
  height: number;
  bitmap: { data: Buffer };
  resize(size: { w: number; h: number }): unknown;
  greyscale(): unknown;
}

function isPng(bytes: Buffer): boolean {
  return bytes.length >= 8 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.readUInt32BE(4) === 0x0d0a1a0a;
}

function isJpeg(bytes: Buffer): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Entry names of a folder, sorted (hidden ones left out); a DatasetError when it cannot be listed. */
export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((name) => !name.startsWith('.'))
      .sort(compareCodeUnits);
  } catch (cause) {
    const why = describeReadFailure(cause);
    throw new DatasetError(dir, why === 'file not found' ? 'no such file or folder' : why, undefined, { cause });
  }
}

export function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}
