// The offline kustomize stand-in that k8s-manifests.test.ts trusts: RFC 6902 patches, image
// rewriting, resource loading, and refusal of everything it does not implement.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyJsonPatch } from '../../deploy/scripts/json-patch.js';
import { renderKustomization, splitImage } from '../../deploy/scripts/kustomize-lite.js';

describe('applyJsonPatch', () => {
  const doc = { spec: { n: 1, list: ['a', 'b'], 'a/b': 1, 'm~n': 2 } };

  it('adds, replaces and removes object members and array elements', () => {
    expect(
      applyJsonPatch(doc, [
        { op: 'add', path: '/spec/x', value: { y: 1 } },
        { op: 'add', path: '/spec/list/1', value: 'inserted' },
        { op: 'add', path: '/spec/list/-', value: 'last' },
        { op: 'replace', path: '/spec/n', value: 2 },
        { op: 'remove', path: '/spec/list/0' },
        { op: 'remove', path: '/spec/a~1b' },
        { op: 'replace', path: '/spec/m~0n', value: 3 },
      ]),
    ).toEqual({ spec: { n: 2, list: ['inserted', 'b', 'last'], 'm~n': 3, x: { y: 1 } } });
  });

  it('never mutates its input', () => {
    const before = structuredClone(doc);
    applyJsonPatch(doc, [{ op: 'replace', path: '/spec/n', value: 9 }]);
    expect(doc).toEqual(before);
  });

  it('passes a matching test op and fails a mismatching one', () => {
    expect(applyJsonPatch(doc, [{ op: 'test', path: '/spec/list', value: ['a', 'b'] }])).toEqual(doc);
    expect(() => applyJsonPatch(doc, [{ op: 'test', path: '/spec/n', value: 2 }])).toThrow(/op 0 \(test \/spec\/n\)/);
  });

  it('replaces the whole document at the empty pointer', () => {
    expect(applyJsonPatch(doc, [{ op: 'replace', path: '', value: 7 }])).toBe(7);
  });

  it.each([
    [{ op: 'replace', path: '/spec/missing', value: 1 }, 'no member "missing"'],
    [{ op: 'remove', path: '/spec/missing' }, 'no member "missing"'],
    [{ op: 'add', path: '/nope/x', value: 1 }, 'no member "nope"'],
    [{ op: 'replace', path: '/spec/list/2', value: 1 }, 'out of bounds'],
    [{ op: 'add', path: '/spec/list/3', value: 1 }, 'out of bounds'],
    [{ op: 'add', path: '/spec/list/01', value: 1 }, 'not an array index'],
    [{ op: 'remove', path: '/spec/list/-' }, 'not an array index'],
    [{ op: 'add', path: 'spec/n', value: 1 }, 'starts with "/"'],
    [{ op: 'add', path: '/spec/n/x', value: 1 }, 'not an object or array'],
  ] as const)('rejects %j', (op, why) => {
    expect(() => applyJsonPatch(doc, [op])).toThrow(why);
  });
});

describe('splitImage', () => {
  it.each([
    ['ringtrain', { name: 'ringtrain', tag: '', digest: '' }],
    ['ringtrain:latest', { name: 'ringtrain', tag: 'latest', digest: '' }],
    ['localhost:5000/ringtrain', { name: 'localhost:5000/ringtrain', tag: '', digest: '' }],
    ['localhost:5000/team/ringtrain:1.2', { name: 'localhost:5000/team/ringtrain', tag: '1.2', digest: '' }],
    ['r.io/ringtrain:1@sha256:ab', { name: 'r.io/ringtrain', tag: '1', digest: 'sha256:ab' }],
  ])('splits %s', (image, parts) => {
    expect(splitImage(image)).toEqual(parts);
  });
});

describe('renderKustomization', () => {
  let root = '';
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** Writes `files` (path -> text) under a fresh temp folder and returns its path. */
  function tree(files: Record<string, string>): string {
    root = mkdtempSync(path.join(tmpdir(), 'kustomize-lite-'));
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      writeFileSync(path.join(root, file), text);
    }
    return root;
  }
  const header = 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n';
  const pod = (name: string, image: string): string =>
    `apiVersion: v1\nkind: Pod\nmetadata: { name: ${name} }\nspec:\n  initContainers: [{ name: i, image: ${image} }]\n  containers: [{ name: c, image: ${image} }, { name: d, image: other:1 }]\n`;

  it('loads nested kustomizations and multi-document files, then patches, then rewrites images', () => {
    const dir = tree({
      'base/kustomization.yaml': `${header}resources: [pods.yaml]\n`,
      'base/pods.yaml': `${pod('a', 'ringtrain:latest')}---\n${pod('b', 'ringtrain')}`,
      'overlay/kustomization.yaml': `${header}resources: [../base]\nimages: [{ name: ringtrain, newName: r.io/rt, newTag: '2' }]\npatches:\n  - target: { kind: Pod, name: b }\n    patch: '[{ op: add, path: /metadata/labels, value: { x: y } }]'\n`,
    });
    const objects = renderKustomization(path.join(dir, 'overlay'));
    expect(objects.map((o) => o.metadata)).toEqual([{ name: 'a' }, { name: 'b', labels: { x: 'y' } }]);
    const images = JSON.stringify(objects).match(/"image":"[^"]*"/g);
    expect(images).toEqual([
      '"image":"r.io/rt:2"',
      '"image":"r.io/rt:2"',
      '"image":"other:1"',
      '"image":"r.io/rt:2"',
      '"image":"r.io/rt:2"',
      '"image":"other:1"',
    ]);
  });

  it('keeps the tag when only newName is given, and pins a digest over the tag', () => {
    const dir = tree({
      'kustomization.yaml': `${header}resources: [p.yaml]\nimages: [{ name: ringtrain, newName: r.io/rt }, { name: other, digest: 'sha256:ff' }]\n`,
      'p.yaml': pod('a', 'ringtrain:7'),
    });
    expect(JSON.stringify(renderKustomization(dir))).toContain('"image":"r.io/rt:7"');
    expect(JSON.stringify(renderKustomization(dir))).toContain('"image":"other@sha256:ff"');
  });

  it.each([
    ['an unsupported key', `${header}namePrefix: x-\n`, {}, /unsupported or invalid/],
    [
      'a strategic-merge patch',
      `${header}resources: [p.yaml]\npatches: [{ target: { kind: Pod }, patch: 'metadata: { name: z }' }]\n`,
      { 'p.yaml': pod('a', 'x') },
      /not a JSON 6902 patch/,
    ],
    [
      'a patch that matches nothing',
      `${header}resources: [p.yaml]\npatches: [{ target: { kind: Job }, patch: '[]' }]\n`,
      { 'p.yaml': pod('a', 'x') },
      /matches no resource/,
    ],
    ['a file outside the root', `${header}resources: [../p.yaml]\n`, {}, /outside the kustomization root/],
    ['a missing file', `${header}resources: [gone.yaml]\n`, {}, /does not exist/],
    [
      'the same object twice',
      `${header}resources: [p.yaml, q.yaml]\n`,
      { 'p.yaml': pod('a', 'x'), 'q.yaml': pod('a', 'y') },
      /appears twice/,
    ],
    [
      'a non-object resource',
      `${header}resources: [p.yaml]\n`,
      { 'p.yaml': 'just: text\n' },
      /not a Kubernetes object/,
    ],
  ])('refuses %s', (_what, kustomization, files, why) => {
    const dir = tree({ 'k/kustomization.yaml': kustomization, ...prefixed('k/', files), 'p.yaml': pod('o', 'x') });
    expect(() => renderKustomization(path.join(dir, 'k'))).toThrow(why);
  });
});

function prefixed(prefix: string, files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([file, text]) => [`${prefix}${file}`, text]));
}
