// Reads text for sequence models: a UTF-8 file or folder, split into tokens (characters, or words
// and punctuation), mapped to indices by a vocabulary built from the data, and cut into windows
// of `window` token indices (the model's input; an embedding layer's job to embed them).
//   nextToken       each window's label is the token after it (a language model)
//   classification  DIR/<label>/*.txt: each window's label is its file's folder
//
// Invariants:
// - Index 0 is the unknown token "<unk>" (any token outside the vocabulary) and the padding of a
//   classification file's last window; tokens 1..K are the K most frequent, ties by first appearance.
// - Windows never cross a file boundary; files are read in name order, so every machine builds
//   the same samples.
// - A file that is not valid UTF-8 is an error naming the file and the byte offset.
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { DatasetError } from '../errors.js';
import type { DataSpec } from '../job-schema.js';
import { isDirectory, listDir } from './image-source.js';
import type { RawSamples } from './raw-samples.js';
import { readDataFile } from './read-data-file.js';

type TextSpec = Extract<DataSpec, { format: 'text' }>;

export const UNKNOWN_TOKEN = '<unk>';

interface TextFile {
  file: string;
  tokens: string[];
  /** Folder index (classification); 0 otherwise. */
  label: number;
}

export function readText(spec: TextSpec): RawSamples {
  const { files, labels } = listTextFiles(spec);
  const tokenized = files.map(({ file, label }) => ({ file, label, tokens: tokenize(decodeUtf8(file), spec.tokens) }));
  const vocabulary = buildVocabulary(tokenized, spec.vocabularySize);
  const indexOf = new Map(vocabulary.map((token, i) => [token, i]));
  const windows = cutWindows(spec, tokenized, (token) => indexOf.get(token) ?? 0);
  const classNames = spec.task === 'classification' ? labels : vocabulary;
  return {
    file: spec.path,
    count: windows.count,
    featureSize: spec.window,
    x: windows.x,
    target: { kind: 'classes', classIndex: windows.classIndex, numClasses: classNames.length, classNames },
    vocabulary,
  };
}

/** The files to read and, for classification, the label (folder) names. */
function listTextFiles(spec: TextSpec): { files: Array<{ file: string; label: number }>; labels: string[] } {
  const txt = (dir: string): string[] =>
    listDir(dir)
      .filter((name) => name.toLowerCase().endsWith('.txt'))
      .map((name) => path.join(dir, name));
  if (spec.task === 'classification') {
    if (!isDirectory(spec.path))
      throw new DatasetError(spec.path, 'task classification needs a folder DIR/<label>/*.txt, not a file');
    const labels = listDir(spec.path).filter((name) => isDirectory(path.join(spec.path, name)));
    if (labels.length < 2)
      throw new DatasetError(spec.path, `holds ${labels.length} label folders; classification needs at least two`);
    const files = labels.flatMap((label, i) => txt(path.join(spec.path, label)).map((file) => ({ file, label: i })));
    const empty = labels.find((_, i) => !files.some((f) => f.label === i));
    if (empty !== undefined) throw new DatasetError(path.join(spec.path, empty), 'holds no .txt files');
    return { files, labels };
  }
  const isFile = (() => {
    try {
      return statSync(spec.path).isFile();
    } catch {
      return false;
    }
  })();
  const files = isFile ? [spec.path] : txt(spec.path);
  if (files.length === 0) throw new DatasetError(spec.path, 'holds no .txt files');
  return { files: files.map((file) => ({ file, label: 0 })), labels: [] };
}

/**
 * The file's text; invalid UTF-8 is a DatasetError at the first bad byte. The fatal decoder
 * says only that the bytes are bad, so the offset is found by bisecting prefixes decoded in
 * streaming mode (where an incomplete sequence at the end is not yet an error).
 */
export function decodeUtf8(file: string, bytes: Uint8Array = readDataFile(file)): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    let valid = 0;
    let invalid = bytes.length;
    while (invalid - valid > 1) {
      const mid = Math.floor((valid + invalid) / 2);
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
        valid = mid;
      } catch {
        invalid = mid;
      }
    }
    const offset = badSequenceStart(bytes, invalid - 1);
    throw new DatasetError(
      file,
      `is not valid UTF-8 (byte offset ${offset}: 0x${(bytes[offset] ?? 0).toString(16).padStart(2, '0')}); convert it to UTF-8, e.g. iconv -f latin1 -t utf-8`,
    );
  }
}

/**
 * The decoder notices a bad sequence at byte `detected`; when the bytes before it end in an
 * incomplete sequence (a lead byte not followed by enough continuation bytes), that sequence's
 * lead byte is where the file goes wrong.
 */
function badSequenceStart(bytes: Uint8Array, detected: number): number {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, detected));
    return detected;
  } catch {
    let start = detected - 1;
    while (start > 0 && detected - start < 4 && ((bytes[start] as number) & 0xc0) === 0x80) start--;
    return start;
  }
}

/** chars: code points; words: runs of letters/digits, and every other non-space character alone. */
export function tokenize(text: string, kind: TextSpec['tokens']): string[] {
  if (kind === 'chars') return Array.from(text);
  return text.match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? [];
}

/** [<unk>, the most frequent tokens (at most `size`), ties by first appearance]. */
export function buildVocabulary(files: readonly TextFile[], size: number | undefined): string[] {
  const counts = new Map<string, number>();
  for (const { tokens } of files) for (const token of tokens) counts.set(token, (counts.get(token) ?? 0) + 1);
  // Map iteration is insertion order, and sort is stable: equal counts keep first appearance.
  const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([token]) => token);
  return [UNKNOWN_TOKEN, ...ranked.filter((t) => t !== UNKNOWN_TOKEN).slice(0, size ?? ranked.length)];
}

function cutWindows(
  spec: TextSpec,
  files: readonly TextFile[],
  indexOf: (token: string) => number,
): { count: number; x: Float32Array; classIndex: Uint32Array } {
  const { window } = spec;
  const nextToken = spec.task === 'nextToken';
  const stride = spec.stride ?? (nextToken ? 1 : window);
  const starts = files.map(({ tokens }) => windowStarts(tokens.length, window, stride, nextToken));
  const count = starts.reduce((n, s) => n + s.length, 0);
  if (count === 0)
    throw new DatasetError(
      spec.path,
      `has no text of ${window + 1} tokens in one file, so no window of ${window} plus a next token; lower data.window`,
    );
  const x = new Float32Array(count * window);
  const classIndex = new Uint32Array(count);
  let sample = 0;
  files.forEach(({ tokens, label }, f) => {
    for (const start of starts[f] ?? []) {
      for (let i = 0; i < window && start + i < tokens.length; i++)
        x[sample * window + i] = indexOf(tokens[start + i] as string);
      classIndex[sample++] = nextToken ? indexOf(tokens[start + window] as string) : label;
    }
  });
  return { count, x, classIndex };
}

/** nextToken: windows with a token after them; classification: windows covering the file, the last one padded. */
function windowStarts(length: number, window: number, stride: number, nextToken: boolean): number[] {
  const starts: number[] = [];
  if (nextToken) {
    for (let s = 0; s + window < length; s += stride) starts.push(s);
    return starts;
  }
  for (let s = 0; s < length; s += stride) {
    starts.push(s);
    if (s + window >= length) break;
  }
  return starts;
}
