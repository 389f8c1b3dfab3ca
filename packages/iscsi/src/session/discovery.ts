/**
 * SendTargets (RFC 7143 appendix C): which targets an initiator may see and where to reach them.
 *
 *   SendTargets=All          discovery session: every target whose ACL admits the initiator
 *   SendTargets=<iqn>        that target, if it exists and admits the initiator (else nothing)
 *   SendTargets=             normal session: the session's own target
 *
 * Each target is answered with TargetName=<iqn> followed by one TargetAddress=<host:port>,<tpgt>
 * per portal. `All` in a normal session, or an empty value in a discovery session, is answered
 * with Reject.
 */
import type { TextPairs } from '../transport/text.js';
import type { SessionKind } from './negotiation.js';
import type { TargetDirectory, TargetNode } from './target-node.js';

export interface SendTargetsContext {
  sessionType: SessionKind;
  currentTarget: TargetNode | null;
  initiatorName: string;
  directory: TargetDirectory;
  /** The portal the initiator reached (`host:port`), used when a target announces none. */
  localPortal: string;
}

/** The answer keys, or null to answer SendTargets=Reject. */
export function sendTargets(value: string, ctx: SendTargetsContext): TextPairs | null {
  if (value === 'All') {
    if (ctx.sessionType !== 'Discovery') return null;
    return ctx.directory
      .list()
      .filter((t) => t.allows(ctx.initiatorName))
      .flatMap((t) => entries(t, ctx));
  }
  if (value === '') {
    if (ctx.sessionType !== 'Normal' || !ctx.currentTarget) return null;
    return entries(ctx.currentTarget, ctx);
  }
  const t = ctx.directory.find(value);
  return t && t.allows(ctx.initiatorName) ? entries(t, ctx) : [];
}

function entries(t: TargetNode, ctx: SendTargetsContext): TextPairs {
  const portals = t.portals.length ? t.portals : [ctx.localPortal];
  return [['TargetName', t.name], ...portals.map((p): [string, string] => ['TargetAddress', `${p},${t.tpgt}`])];
}

/** `host:port` with IPv6 hosts bracketed and IPv4-mapped IPv6 addresses unwrapped. */
export function formatPortal(host: string, port: number): string {
  const h = host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}
