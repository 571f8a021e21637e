// The flags that name a process's mutual-TLS material and job token, shared by `train`,
// `coordinator` and `worker`. Each has an environment variable (for Kubernetes secrets) and a
// key in the job's `security:` block; flags win, then the environment, then the job.
import type { Command } from 'commander';

export interface SecurityFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
}

export function addSecurityOptions(command: Command): Command {
  return command
    .option('--tls-ca <file>', 'PEM CA that signs every certificate of the job (env RINGTRAIN_TLS_CA)')
    .option('--tls-cert <file>', 'PEM certificate this process presents (env RINGTRAIN_TLS_CERT)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert (env RINGTRAIN_TLS_KEY)')
    .option('--token-file <file>', "file holding the job's token (env RINGTRAIN_TOKEN holds the token itself)");
}
