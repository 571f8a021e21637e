// The mnist package's digit files read straight from their bytes: the same float32 values as
// JSON.parse, and anything unusual left to the JSON path.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { interleavedRows, mnistDigitsDir, parsePlainDecimals } from '../../shared/data/mnist-source.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('parsePlainDecimals', () => {
  it('reads plain decimals with any spacing', () => {
    expect(parsePlainDecimals(bytes('{ "data": [0,0.2, 0.624 ,1,\n12.5] }\n'))).toEqual(
      Float32Array.from([0, 0.2, 0.624, 1, 12.5]),
    );
  });

  it('gives the bits JSON.parse gives on a real digit file', () => {
    const file = readFileSync(path.join(mnistDigitsDir(), '7.json'));
    const expected = Float32Array.from((JSON.parse(file.toString('utf8')) as { data: number[] }).data);
    const actual = parsePlainDecimals(file);
    expect(actual?.length).toBe(expected.length);
    expect(Buffer.from(actual!.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
  });

  it('writes into a buffer of exactly the right size, and refuses one of another size', () => {
    const into = new Float32Array(3);
    expect(parsePlainDecimals(bytes('{"data":[1,0.5,0.25]}'), into)).toBe(into);
    expect([...into]).toEqual([1, 0.5, 0.25]);
    expect(parsePlainDecimals(bytes('{"data":[1,0.5]}'), into)).toBeUndefined();
  });

  it.each([
    ['an exponent', '{"data":[1e-3,0]}'],
    ['a negative number', '{"data":[-0.5]}'],
    ['more than 15 significant digits', '{"data":[0.1234567890123456]}'],
    ['a trailing dot', '{"data":[1.]}'],
    ['an empty slot', '{"data":[1,,2]}'],
    ['another key', '{"labels":[1]}'],
    ['text after the object', '{"data":[1]} x'],
    ['a string value', '{"data":["1"]}'],
  ])('leaves %s to JSON.parse', (_, text) => {
    expect(parsePlainDecimals(bytes(text))).toBeUndefined();
  });
});

describe('interleavedRows', () => {
  it('deals rows round-robin over the classes, shorter classes dropping out', () => {
    expect(interleavedRows([2, 3, 1]).map((rows) => [...rows])).toEqual([[0, 3], [1, 4, 5], [2]]);
  });
});
