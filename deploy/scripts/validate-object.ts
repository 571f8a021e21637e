// Offline schema validation for the kinds deploy/k8s uses, like `kubectl apply --dry-run=client`
// without a cluster: built-in kinds against kubernetes-models' OpenAPI schemas, JobSet against
// jobset-schema.ts plus each replicatedJob's template as a batch/v1 JobTemplateSpec.
// kubernetes-models checks types, enums and required fields but, like the API server's
// non-strict mode, ignores unknown keys; the JobSet schema is strict.
import { Job, type IJob } from 'kubernetes-models/batch/v1/Job';
import { JobTemplateSpec, type IJobTemplateSpec } from 'kubernetes-models/batch/v1/JobTemplateSpec';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim, type IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Pod, type IPod } from 'kubernetes-models/v1/Pod';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { z } from 'zod';
import { jobSetSchema } from './jobset-schema.js';

interface TypedObject {
  apiVersion: string;
  kind: string;
}

const VALIDATORS: Record<string, (object: unknown) => void> = {
  'batch/v1/Job': (object) => new Job(object as IJob).validate(),
  'v1/Service': (object) => new Service(object as IService).validate(),
  'v1/ConfigMap': (object) => new ConfigMap(object as IConfigMap).validate(),
  'v1/PersistentVolumeClaim': (object) => new PersistentVolumeClaim(object as IPersistentVolumeClaim).validate(),
  'v1/Pod': (object) => new Pod(object as IPod).validate(),
  'jobset.x-k8s.io/v1alpha2/JobSet': validateJobSet,
};

/** Throws, naming the object and the first problems, unless `object` is valid for its kind. */
export function validateObject(object: TypedObject & { metadata?: { name?: string } }): void {
  const key = `${object.apiVersion}/${object.kind}`;
  const validator = VALIDATORS[key];
  if (validator === undefined) throw new Error(`no validator for ${key}; add one to deploy/scripts/validate-object.ts`);
  try {
    validator(object);
  } catch (cause) {
    const why = cause instanceof z.ZodError ? z.prettifyError(cause) : String(cause);
    throw new Error(`${object.kind}/${object.metadata?.name ?? '?'}: ${why}`, { cause });
  }
}

function validateJobSet(object: unknown): void {
  const jobSet = jobSetSchema.parse(object);
  for (const replicatedJob of jobSet.spec.replicatedJobs) {
    try {
      new JobTemplateSpec(replicatedJob.template as unknown as IJobTemplateSpec).validate();
    } catch (cause) {
      throw new Error(`replicatedJobs[${replicatedJob.name}].template: ${String(cause)}`, { cause });
    }
  }
}
