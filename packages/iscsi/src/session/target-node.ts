/**
 * What the session layer knows about the targets it serves: one TargetNode per iSCSI target
 * (name, alias, portal group, its SCSI device, who may log in, CHAP), and the directory the login
 * and SendTargets look them up in. Built by target/ from the configuration.
 */
import type { ScsiTargetDevice } from '../scsi/types.js';
import type { ChapSecrets } from './chap.js';

export interface TargetNode {
  /** iSCSI name (IQN). */
  readonly name: string;
  readonly alias?: string;
  /** Target portal group tag. */
  readonly tpgt: number;
  /** Portals announced in SendTargets (`host:port`); empty = the address the initiator reached. */
  readonly portals: readonly string[];
  readonly device: ScsiTargetDevice;
  /** Initiator ACL: may this initiator log in to this target? */
  allows(initiatorName: string): boolean;
  /** CHAP secrets: when present, AuthMethod=CHAP is required. */
  readonly chap?: ChapSecrets;
}

export interface TargetDirectory {
  find(name: string): TargetNode | undefined;
  list(): readonly TargetNode[];
  /** CHAP required on discovery sessions, if any. */
  readonly discoveryChap?: ChapSecrets;
}

export function staticDirectory(nodes: readonly TargetNode[], discoveryChap?: ChapSecrets): TargetDirectory {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  return {
    find: (name) => byName.get(name),
    list: () => nodes,
    ...(discoveryChap ? { discoveryChap } : {}),
  };
}
