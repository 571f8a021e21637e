// RFC 6902 JSON Patch (add, remove, replace, test) over plain JSON values, with RFC 6901
// pointers. The input is never mutated: the patch applies to a deep copy, all ops or none.
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';

export const jsonPatchSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('add'), path: z.string(), value: z.unknown() }),
  z.strictObject({ op: z.literal('replace'), path: z.string(), value: z.unknown() }),
  z.strictObject({ op: z.literal('test'), path: z.string(), value: z.unknown() }),
  z.strictObject({ op: z.literal('remove'), path: z.string() }),
]);
export type JsonPatchOp = z.output<typeof jsonPatchSchema>;

type Container = Record<string, unknown> | unknown[];

/** Returns `document` with `ops` applied in order; throws naming the first op that fails. */
export function applyJsonPatch(document: unknown, ops: readonly JsonPatchOp[]): unknown {
  let root = structuredClone(document);
  ops.forEach((op, index) => {
    try {
      root = applyOne(root, op);
    } catch (cause) {
      const why = cause instanceof Error ? cause.message : String(cause);
      throw new Error(`op ${index} (${op.op} ${op.path}): ${why}`, { cause });
    }
  });
  return root;
}

function applyOne(root: unknown, op: JsonPatchOp): unknown {
  const tokens = parsePointer(op.path);
  const last = tokens.pop();
  if (last === undefined) {
    if (op.op === 'remove') throw new Error('cannot remove the whole document');
    if (op.op === 'test') return testValue(root, op.value);
    return structuredClone(op.value);
  }
  const parent = tokens.reduce<unknown>((node, token) => child(node, token), root);
  if (!isContainer(parent)) throw new Error('parent is not an object or array');
  switch (op.op) {
    case 'add':
      if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, structuredClone(op.value));
      else parent[last] = structuredClone(op.value);
      return root;
    case 'replace':
      child(parent, last);
      if (Array.isArray(parent)) parent[arrayIndex(parent, last, false)] = structuredClone(op.value);
      else parent[last] = structuredClone(op.value);
      return root;
    case 'remove':
      child(parent, last);
      if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false), 1);
      else delete parent[last];
      return root;
    case 'test':
      testValue(child(parent, last), op.value);
      return root;
  }
}

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new Error('a JSON pointer starts with "/"');
  return pointer
    .slice(1)
    .split('/')
    .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function isContainer(node: unknown): node is Container {
  return typeof node === 'object' && node !== null;
}

function child(node: unknown, token: string): unknown {
  if (Array.isArray(node)) return node[arrayIndex(node, token, false)];
  if (isContainer(node) && !Array.isArray(node) && Object.hasOwn(node, token)) return node[token];
  throw new Error(`no member "${token}"`);
}

/** `-` and an index equal to the length (both append) are valid only for add; leading zeros never are. */
function arrayIndex(array: readonly unknown[], token: string, forAdd: boolean): number {
  if (forAdd && token === '-') return array.length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw new Error(`"${token}" is not an array index`);
  const index = Number(token);
  if (index > array.length || (!forAdd && index === array.length)) {
    throw new Error(`index ${index} is out of bounds (length ${array.length})`);
  }
  return index;
}

function testValue(actual: unknown, expected: unknown): unknown {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new Error(`test failed: found ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
  return actual;
}
