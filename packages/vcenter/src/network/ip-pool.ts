/**
 * The VM network: the CIDR VM addresses come from, and the allocation of one unique address per
 * VM. Automatic allocation takes the lowest free address, skipping the network and broadcast
 * addresses and every x.x.x.0, x.x.x.1 and x.x.x.255 (gateway-style addresses people do not
 * expect a VM to own). An explicit address only has to be inside the network, not its network or
 * broadcast address, and free.
 */
import { EsxError } from '@esxemu/shared';

const MIN_PREFIX = 8;
const MAX_PREFIX = 30;

export function ipv4ToInt(ip: string): number | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export class IpPool {
  readonly cidr: string;
  private readonly base: number;
  private readonly size: number;

  constructor(cidr: string) {
    const m = /^([^/]+)\/(\d{1,2})$/.exec(cidr.trim());
    const base = m ? ipv4ToInt(m[1]!) : null;
    const prefix = m ? Number(m[2]) : NaN;
    if (base === null || !(prefix >= MIN_PREFIX && prefix <= MAX_PREFIX)) {
      throw new EsxError('INVALID_ARGUMENT', `vmNetwork must be an IPv4 CIDR with a prefix of /${MIN_PREFIX} to /${MAX_PREFIX}, like 127.77.0.0/16; got '${cidr}'`);
    }
    this.size = 2 ** (32 - prefix);
    if (base % this.size !== 0) {
      const fixed = `${intToIpv4(base - (base % this.size))}/${prefix}`;
      throw new EsxError('INVALID_ARGUMENT', `vmNetwork '${cidr}' has host bits set; did you mean ${fixed}?`);
    }
    this.base = base;
    this.cidr = `${intToIpv4(base)}/${prefix}`;
  }

  /** The lowest free address; INSUFFICIENT_RESOURCES when the network is full. */
  allocate(used: ReadonlySet<string>): string {
    for (let i = 1; i < this.size - 1; i++) {
      const n = this.base + i;
      const last = n & 255;
      if (last === 0 || last === 1 || last === 255) continue;
      const ip = intToIpv4(n);
      if (!used.has(ip)) return ip;
    }
    throw new EsxError('INSUFFICIENT_RESOURCES', `no free address left in the VM network ${this.cidr}`);
  }

  /** Check an address asked for explicitly. `usedBy` names the VM that already owns it, if any. */
  checkExplicit(ip: string, usedBy: (ip: string) => string | null): void {
    const n = ipv4ToInt(ip);
    if (n === null) throw new EsxError('INVALID_ARGUMENT', `'${ip}' is not an IPv4 address`);
    if (n < this.base || n >= this.base + this.size) {
      throw new EsxError('INVALID_ARGUMENT', `IP ${ip} is outside the VM network ${this.cidr}`);
    }
    if (n === this.base || n === this.base + this.size - 1) {
      throw new EsxError('INVALID_ARGUMENT', `IP ${ip} is the ${n === this.base ? 'network' : 'broadcast'} address of ${this.cidr}`);
    }
    const owner = usedBy(ip);
    if (owner !== null) throw new EsxError('NAME_IN_USE', `IP ${ip} is already used by VM '${owner}'`);
  }
}
