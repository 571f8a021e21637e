// An offline stand-in for `kustomize build`, so tests can render deploy/k8s without kubectl.
// It covers exactly what deploy/k8s uses and refuses everything else (unknown kustomization keys
// fail zod's strict parse), so a manifest can never depend on a feature it silently skips:
//   resources  files inside the kustomization's folder, or folders holding a kustomization.yaml
//   patches    RFC 6902 JSON patches (inline `patch` or `path`) with a kind/name/group/version target
//   images     name -> newName / newTag / digest on every `containers` and `initContainers` entry
// Order as kustomize: resources, then patches, then images. A patch that matches nothing is an error.
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { applyJsonPatch, jsonPatchSchema } from './json-patch.js';

export class KustomizeError extends Error {
  constructor(
    readonly file: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${reason}`, options);
    this.name = 'KustomizeError';
  }
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

const k8sObjectSchema = z.looseObject({
  apiVersion: z.string().min(1),
  kind: z.string().min(1),
  metadata: z.looseObject({ name: z.string().min(1), namespace: z.string().optional() }),
});

const imageSchema = z.strictObject({
  name: z.string().min(1),
  newName: z.string().min(1).optional(),
  newTag: z.string().min(1).optional(),
  digest: z.string().min(1).optional(),
});
type ImageRule = z.output<typeof imageSchema>;

const targetSchema = z.strictObject({
  group: z.string().optional(),
  version: z.string().optional(),
  kind: z.string().optional(),
  name: z.string().optional(),
});
type PatchTarget = z.output<typeof targetSchema>;

const kustomizationSchema = z.strictObject({
  apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
  kind: z.literal('Kustomization'),
  resources: z.array(z.string().min(1)).default([]),
  patches: z
    .array(
      z
        .strictObject({ path: z.string().optional(), patch: z.string().optional(), target: targetSchema })
        .refine((p) => (p.path === undefined) !== (p.patch === undefined), 'give exactly one of `path` and `patch`'),
    )
    .default([]),
  images: z.array(imageSchema).default([]),
});

/** Every document in a (multi-document) YAML file, empty documents skipped. */
export function readYamlDocuments(file: string): unknown[] {
  const documents = parseAllDocuments(readFileSync(file, 'utf8'));
  const list = Array.isArray(documents) ? documents : [documents];
  return list.flatMap((document) => {
    if (document.errors.length > 0) throw new KustomizeError(file, document.errors.map((e) => e.message).join('; '));
    const value: unknown = document.toJS();
    return value === null || value === undefined ? [] : [value];
  });
}

/** Renders the kustomization in `dir` to the list of objects `kustomize build dir` would print. */
export function renderKustomization(dir: string): K8sObject[] {
  const file = path.join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new KustomizeError(dir, 'no kustomization.yaml here');
  const parsed = kustomizationSchema.safeParse(parseYaml(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new KustomizeError(file, `unsupported or invalid: ${z.prettifyError(parsed.error)}`);
  const kustomization = parsed.data;

  let objects = kustomization.resources.flatMap((resource) => loadResource(dir, file, resource));
  assertUniqueIds(file, objects);
  for (const [index, patch] of kustomization.patches.entries()) {
    const text = patch.patch ?? readFileSync(insideRoot(dir, file, patch.path ?? ''), 'utf8');
    const ops = z.array(jsonPatchSchema).safeParse(parseYaml(text));
    if (!ops.success)
      throw new KustomizeError(file, `patches[${index}] is not a JSON 6902 patch (only those are supported)`);
    let matched = 0;
    objects = objects.map((object) => {
      if (!matchesTarget(object, patch.target)) return object;
      matched++;
      try {
        return toObject(file, applyJsonPatch(object, ops.data));
      } catch (cause) {
        throw new KustomizeError(
          file,
          `patches[${index}] on ${object.kind}/${object.metadata.name}: ${String(cause)}`,
          { cause },
        );
      }
    });
    if (matched === 0) throw new KustomizeError(file, `patches[${index}] matches no resource`);
  }
  for (const rule of kustomization.images) objects.forEach((object) => rewriteImages(object, rule));
  return objects;
}

function loadResource(dir: string, file: string, resource: string): K8sObject[] {
  const target = path.resolve(dir, resource);
  if (existsSync(target) && statSync(target).isDirectory()) return renderKustomization(target);
  return readYamlDocuments(insideRoot(dir, file, resource)).map((value) => toObject(resource, value));
}

/** kustomize's load restrictor: plain files must sit inside the kustomization's own folder. */
function insideRoot(dir: string, file: string, relative: string): string {
  const target = path.resolve(dir, relative);
  if (path.relative(dir, target).startsWith('..')) {
    throw new KustomizeError(file, `${relative} is outside the kustomization root; kustomize would refuse it`);
  }
  if (!existsSync(target)) throw new KustomizeError(file, `${relative} does not exist`);
  return target;
}

function toObject(source: string, value: unknown): K8sObject {
  const parsed = k8sObjectSchema.safeParse(value);
  if (!parsed.success) throw new KustomizeError(source, `not a Kubernetes object: ${z.prettifyError(parsed.error)}`);
  return parsed.data as K8sObject;
}

function assertUniqueIds(file: string, objects: readonly K8sObject[]): void {
  const ids = objects.map((o) => `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
  const duplicate = ids.find((id, i) => ids.indexOf(id) !== i);
  if (duplicate !== undefined) throw new KustomizeError(file, `resource ${duplicate} appears twice`);
}

function matchesTarget(object: K8sObject, target: PatchTarget): boolean {
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  const actual: PatchTarget = {
    group: group ?? '',
    version: version ?? '',
    kind: object.kind,
    name: object.metadata.name,
  };
  return (Object.keys(target) as (keyof PatchTarget)[]).every((key) => isDeepStrictEqual(target[key], actual[key]));
}

/** Splits `registry:5000/name:tag@digest` into name and the rest, as kustomize's image matcher does. */
export function splitImage(image: string): { name: string; tag: string; digest: string } {
  const at = image.indexOf('@');
  const withoutDigest = at < 0 ? image : image.slice(0, at);
  const digest = at < 0 ? '' : image.slice(at + 1);
  const colon = withoutDigest.lastIndexOf(':');
  const hasTag = colon > withoutDigest.lastIndexOf('/');
  return {
    name: hasTag ? withoutDigest.slice(0, colon) : withoutDigest,
    tag: hasTag ? withoutDigest.slice(colon + 1) : '',
    digest,
  };
}

function rewriteImages(node: unknown, rule: ImageRule): void {
  if (Array.isArray(node)) {
    node.forEach((child) => rewriteImages(child, rule));
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  for (const [key, child] of Object.entries(node)) {
    if ((key === 'containers' || key === 'initContainers') && Array.isArray(child)) {
      for (const container of child as unknown[]) rewriteContainerImage(container, rule);
    }
    rewriteImages(child, rule);
  }
}

function rewriteContainerImage(container: unknown, rule: ImageRule): void {
  if (typeof container !== 'object' || container === null || !('image' in container)) return;
  if (typeof container.image !== 'string') return;
  const image = splitImage(container.image);
  if (image.name !== rule.name) return;
  const name = rule.newName ?? image.name;
  const tag = rule.newTag ?? image.tag;
  const digest = rule.digest ?? (rule.newTag === undefined ? image.digest : '');
  container.image = digest !== '' ? `${name}@${digest}` : tag !== '' ? `${name}:${tag}` : name;
}
