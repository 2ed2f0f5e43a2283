// Where --ssh runs, checked by the command line before anything is loaded or started (src/sources/ssh.ts runs it).

import { InputError } from '../errors.js';

export interface SshTarget {
  /** [user@]host, or ssh://[user@]host[:port] */
  destination: string;
  /** An ssh_config file for this host (port, key, known hosts), given to ssh as -F. */
  config?: string;
}

/** A destination ssh reads as one: never an option, never more than a user, a host and a port. */
export function checkSshDestination(d: string): string {
  if (!/^(?:ssh:\/\/)?(?:[A-Za-z0-9_][\w.-]{0,63}@)?(?:[A-Za-z0-9][\w.-]{0,252}|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(d) || (!d.startsWith('ssh://') && /:\d+$/.test(d) && !d.includes('['))) {
    throw new InputError(`--ssh "${d}" is not [user@]host or ssh://[user@]host[:port].`, 'Other settings (port, key, jump hosts) go in your ssh config, or in a file named with --ssh-config.');
  }
  return d;
}
