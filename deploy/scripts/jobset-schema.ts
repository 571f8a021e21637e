// A structural schema for the JobSet (jobset.x-k8s.io/v1alpha2) fields deploy/k8s/jobset uses.
// JobSet is a CRD, so kubernetes-models has no model for it. The objects here are strict: a key
// this schema does not know is an error, so a typo cannot pass. Each replicatedJob's `template`
// is a batch/v1 JobTemplateSpec and is left open here; validate it with kubernetes-models.
// Field names and enums follow the v1alpha2 API reference (JobSet >= 0.8 for dependsOn).
import { z } from 'zod';

const name = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label');

const replicatedJobSchema = z.strictObject({
  name,
  replicas: z.number().int().positive(),
  /** Creates this job only once the named earlier replicatedJob is Ready or Complete. */
  dependsOn: z.array(z.strictObject({ name, status: z.enum(['Ready', 'Complete']) })).optional(),
  template: z.looseObject({ spec: z.looseObject({}) }),
});

export const jobSetSchema = z.strictObject({
  apiVersion: z.literal('jobset.x-k8s.io/v1alpha2'),
  kind: z.literal('JobSet'),
  metadata: z.looseObject({ name }),
  spec: z
    .strictObject({
      network: z
        .strictObject({
          enableDNSHostnames: z.boolean().optional(),
          subdomain: name.optional(),
          publishNotReadyAddresses: z.boolean().optional(),
        })
        .optional(),
      successPolicy: z
        .strictObject({ operator: z.enum(['All', 'Any']), targetReplicatedJobs: z.array(name).optional() })
        .optional(),
      failurePolicy: z.strictObject({ maxRestarts: z.number().int().nonnegative() }).optional(),
      ttlSecondsAfterFinished: z.number().int().nonnegative().optional(),
      replicatedJobs: z.array(replicatedJobSchema).min(1),
    })
    .superRefine((spec, ctx) => {
      const names = spec.replicatedJobs.map((job) => job.name);
      const known = (job: string): boolean => names.includes(job);
      for (const target of spec.successPolicy?.targetReplicatedJobs ?? []) {
        if (!known(target)) ctx.addIssue({ code: 'custom', message: `successPolicy names unknown job "${target}"` });
      }
      spec.replicatedJobs.forEach((job, index) => {
        for (const dependency of job.dependsOn ?? []) {
          // The API allows depending only on a replicatedJob listed earlier.
          if (!names.slice(0, index).includes(dependency.name)) {
            ctx.addIssue({
              code: 'custom',
              message: `${job.name} depends on "${dependency.name}", not an earlier job`,
            });
          }
        }
      });
      if (new Set(names).size !== names.length) ctx.addIssue({ code: 'custom', message: 'duplicate job names' });
    }),
});
export type JobSetManifest = z.output<typeof jobSetSchema>;
