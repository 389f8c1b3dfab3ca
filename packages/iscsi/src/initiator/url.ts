/**
 * iSCSI URLs as libiscsi writes them: `iscsi://<host>[:<port>]/<target iqn>/<lun>`, the one
 * string a user gives to name a LUN (CLI flags, host options). Port 3260 by default; IPv6
 * hosts in brackets.
 */
import { EsxError } from '@esxemu/shared';

export interface IscsiUrl {
  /** host:port */
  portal: string;
  targetName: string;
  lun: number;
}

export function parseIscsiUrl(url: string): IscsiUrl {
  const m = /^iscsi:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?\/([^/\s]+)\/(\d{1,5})$/.exec(url.trim());
  const port = m?.[2] === undefined ? 3260 : Number(m[2]);
  if (!m || port < 1 || port > 65535 || Number(m[4]) > 16383) {
    throw new EsxError('INVALID_ARGUMENT', `'${url}' is not an iSCSI URL like iscsi://127.0.0.1:3260/iqn.2026-11.io.esxemu:datastore1/0`);
  }
  return { portal: `${m[1]}:${port}`, targetName: m[3]!, lun: Number(m[4]) };
}

export function formatIscsiUrl(u: IscsiUrl): string {
  return `iscsi://${u.portal}/${u.targetName}/${u.lun}`;
}
