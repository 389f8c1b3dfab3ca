/** How a client command finds vcenter: --vcenter/--token > ESXEMU_VCENTER/ESXEMU_TOKEN > the local cluster's files. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { EsxError } from '@esxemu/shared';
import { ApiClient } from '../client/api-client.js';
import { clusterLayout, defaultHome } from '../cluster/layout.js';
import { readClusterState } from '../cluster/state.js';

export interface GlobalOpts {
  home?: string;
  vcenter?: string;
  token?: string;
  json?: boolean;
}

export function globals(cmd: Command): GlobalOpts {
  return cmd.optsWithGlobals() as GlobalOpts;
}

export function homeOf(g: GlobalOpts): string {
  return g.home ?? defaultHome();
}

export function clientFor(cmd: Command): ApiClient {
  const g = globals(cmd);
  const layout = clusterLayout(homeOf(g));
  const url = g.vcenter ?? process.env['ESXEMU_VCENTER'] ?? readClusterState(layout.stateFile)?.vcenterUrl;
  if (!url) {
    throw new EsxError('VCENTER_UNREACHABLE', `no vcenter to talk to: no local cluster in ${layout.home} (start one with 'esxemu cluster up') and no --vcenter / ESXEMU_VCENTER`);
  }
  let token = g.token ?? process.env['ESXEMU_TOKEN'];
  if (!token) {
    try {
      token = readFileSync(layout.tokenFile, 'utf8').trim();
    } catch {
      throw new EsxError('UNAUTHORIZED', `no API token: pass --token or set ESXEMU_TOKEN (vcenter writes it to <its data dir>/token; looked in ${layout.tokenFile})`);
    }
  }
  return new ApiClient({ url, token });
}
