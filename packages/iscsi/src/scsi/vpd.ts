/**
 * Vital product data pages (SPC-4 7.8, SBC-3 6.6): 00h supported pages, 80h unit serial
 * number, 83h device identification, B0h block limits, B1h block device characteristics,
 * B2h logical block provisioning.
 */
import { asciiField } from './cdb.js';
import type { BlockLimits } from './block-limits.js';
import type { LuIdentity } from './identity.js';

export const VPD = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
  BLOCK_LIMITS: 0xb0,
  BLOCK_DEVICE_CHARACTERISTICS: 0xb1,
  LOGICAL_BLOCK_PROVISIONING: 0xb2,
} as const;

const SUPPORTED = [VPD.SUPPORTED_PAGES, VPD.UNIT_SERIAL_NUMBER, VPD.DEVICE_IDENTIFICATION, VPD.BLOCK_LIMITS, VPD.BLOCK_DEVICE_CHARACTERISTICS, VPD.LOGICAL_BLOCK_PROVISIONING];

const PROTOCOL_ISCSI = 0x5;
const CODE_SET_BINARY = 0x1;
const CODE_SET_ASCII = 0x2;
const CODE_SET_UTF8 = 0x3;
const ASSOC_LU = 0x00;
const ASSOC_TARGET_PORT = 0x10;
const ASSOC_TARGET_DEVICE = 0x20;
const PIV = 0x80;

export interface VpdContext {
  identity: LuIdentity;
  limits: BlockLimits;
  thin: boolean;
  /** COMPARE AND WRITE offered (false: MAXIMUM COMPARE AND WRITE LENGTH 0, as SBC-3 says). */
  ats: boolean;
  targetName: string;
  /** Relative target port identifier = target portal group tag. */
  tpgt: number;
}

/** The page, or null when it is not supported (the caller answers INVALID FIELD IN CDB). */
export function vpdPage(code: number, ctx: VpdContext): Buffer | null {
  switch (code) {
    case VPD.SUPPORTED_PAGES:
      return page(code, Buffer.from(SUPPORTED));
    case VPD.UNIT_SERIAL_NUMBER:
      return page(code, Buffer.from(ctx.identity.serial, 'latin1'));
    case VPD.DEVICE_IDENTIFICATION:
      return page(code, deviceIdentification(ctx));
    case VPD.BLOCK_LIMITS:
      return page(code, blockLimits(ctx));
    case VPD.BLOCK_DEVICE_CHARACTERISTICS: {
      const b = Buffer.alloc(0x3c);
      b.writeUInt16BE(0x0001, 0); // MEDIUM ROTATION RATE: non-rotating medium
      return page(code, b);
    }
    case VPD.LOGICAL_BLOCK_PROVISIONING: {
      const b = Buffer.alloc(4);
      if (ctx.thin) {
        b[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ (ANC_SUP 0, DP 0)
        b[2] = 0x02; // PROVISIONING TYPE: thin provisioned
      }
      return page(code, b);
    }
    default:
      return null;
  }
}

function page(code: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = 0x00; // direct access block device
  h[1] = code;
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function designator(codeSetAndProtocol: number, typeAndAssoc: number, value: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = codeSetAndProtocol;
  h[1] = typeAndAssoc;
  h[3] = value.length;
  return Buffer.concat([h, value]);
}

/** A SCSI name string: UTF-8, NUL terminated, padded to a multiple of four bytes. */
function nameString(s: string): Buffer {
  const raw = Buffer.from(s, 'utf8');
  const len = Math.min(252, (raw.length + 1 + 3) & ~3);
  const b = Buffer.alloc(len);
  raw.copy(b, 0, 0, Math.min(raw.length, len - 1));
  return b;
}

export function targetPortName(targetName: string, tpgt: number): string {
  return `${targetName},t,0x${tpgt.toString(16).padStart(4, '0')}`;
}

function deviceIdentification(ctx: VpdContext): Buffer {
  const id = ctx.identity;
  const t10 = Buffer.concat([asciiField(id.vendor, 8), asciiField(id.product, 16), Buffer.from(id.serial, 'latin1')]);
  const relPort = Buffer.alloc(4);
  relPort.writeUInt16BE(ctx.tpgt & 0xffff, 2);
  return Buffer.concat([
    designator(CODE_SET_BINARY, ASSOC_LU | 0x3, id.naa), // NAA
    designator(CODE_SET_ASCII, ASSOC_LU | 0x1, t10), // T10 vendor ID
    designator((PROTOCOL_ISCSI << 4) | CODE_SET_BINARY, PIV | ASSOC_TARGET_PORT | 0x4, relPort), // relative target port
    designator((PROTOCOL_ISCSI << 4) | CODE_SET_UTF8, PIV | ASSOC_TARGET_PORT | 0x8, nameString(targetPortName(ctx.targetName, ctx.tpgt))), // target port name
    designator((PROTOCOL_ISCSI << 4) | CODE_SET_UTF8, PIV | ASSOC_TARGET_DEVICE | 0x8, nameString(ctx.targetName)), // target device name
  ]);
}

function blockLimits(ctx: VpdContext): Buffer {
  const l = ctx.limits;
  const b = Buffer.alloc(0x3c);
  // offsets below are page offsets minus the 4-byte header
  b[0] = 0x01; // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is not supported
  b[1] = ctx.ats ? l.maxCompareAndWriteBlocks : 0;
  b.writeUInt16BE(1, 2); // OPTIMAL TRANSFER LENGTH GRANULARITY
  b.writeUInt32BE(l.maxTransferBlocks, 4);
  b.writeUInt32BE(l.optimalTransferBlocks, 8);
  b.writeUInt32BE(l.maxTransferBlocks, 12); // MAXIMUM PREFETCH LENGTH
  if (ctx.thin) {
    b.writeUInt32BE(l.maxUnmapBlocks, 16);
    b.writeUInt32BE(l.maxUnmapDescriptors, 20);
    b.writeUInt32BE(l.unmapGranularityBlocks, 24);
    b.writeUInt32BE(0x80000000, 28); // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
  }
  b.writeBigUInt64BE(BigInt(l.maxWriteSameBlocks), 32);
  // 40..59: atomic write limits, zero: WRITE ATOMIC is not supported
  return b;
}
