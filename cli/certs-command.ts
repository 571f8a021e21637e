// `ringtrain certs --out DIR [--hosts a,b]`: a CA, one certificate for every component of a job,
// and a job token, for local and test use (shared/security/make-certs.ts).
import type { Command } from 'commander';
import { makeCerts } from '../shared/security/make-certs.js';

export function addCertsCommand(program: Command): void {
  program
    .command('certs')
    .description('make a CA, a certificate every component presents, and a job token (for --tls-* and --token-file)')
    .requiredOption('--out <dir>', 'folder to create (must not exist)')
    .option(
      '--hosts <list>',
      'extra host names or IPs the certificate names, comma-separated (localhost and 127.0.0.1 always)',
    )
    .action((flags: { out: string; hosts?: string }) => {
      const hosts = (flags.hosts ?? '')
        .split(',')
        .map((h) => h.trim())
        .filter((h) => h !== '');
      const made = makeCerts(flags.out, hosts);
      const { ca, cert, key, token } = made.files;
      process.stdout.write(
        `ringtrain: wrote ${made.dir}\n  --tls-ca ${ca} --tls-cert ${cert} --tls-key ${key} --token-file ${token}\n`,
      );
    });
}
