/**
 * File descriptors (inodes), pointer sectors and directory-entry sectors.
 *
 * Inode (one sector in the inode table; inode 0 is the root directory):
 *    0 'VINO'  4 crc  8 ino u32  12 gen u32 (bumped at every allocation of this slot)
 *   16 type u8 (0 free, 1 file, 2 directory)  20 parent u32  24 size u64
 *   32 mtimeMs f64  40 ctimeMs f64  48 indirect[8] u32  80 direct[108] u32
 * A block pointer holds block number + 1; 0 is a hole (thin: never written, reads as zeros).
 * File block b < 108 is direct[b]; past that, indirect[k] names a pointer block (a whole file
 * block used as an array of pointer sectors). An all-zero inode sector is a free inode of
 * generation 0.
 *
 * Pointer sector (inside a pointer block):
 *    0 'VPTR'  4 crc  8 ino u32  12 gen u32  16 pointers[(sector-16)/4]
 * All zero = all holes (a pointer block is zeroed when allocated). The ino/gen stamp catches a
 * pointer block that belongs to another file.
 *
 * Directory-entry sector (a directory's data; its size counts the sectors in use):
 *    0 'VDIR'  4 crc  8 dirIno u32  12 index u32  16 entries[(sector-16)/120] x
 *      { ino u32 (0 = empty slot), gen u32, type u8, nameLen u8, name[110] }
 */
import { EsxError } from '@esxemu/shared';
import { MAX_NAME_BYTES, magicOf, readU64, seal, verifySector, writeU64 } from './codec.js';

export const INODE_MAGIC = magicOf('VINO');
export const PTR_MAGIC = magicOf('VPTR');
export const DIR_MAGIC = magicOf('VDIR');

export const ROOT_INO = 0;
export const DIRECT_POINTERS = 108;
export const INDIRECT_POINTERS = 8;
export const FILE_TYPE = { FREE: 0, FILE: 1, DIR: 2 } as const;
export type FileType = 'file' | 'directory';
export function typeName(t: number): FileType {
  return t === FILE_TYPE.DIR ? 'directory' : 'file';
}

export interface Inode {
  ino: number;
  gen: number;
  type: number;
  parent: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  indirect: number[];
  direct: number[];
}

export function freeInode(ino: number, gen: number): Inode {
  return { ino, gen, type: FILE_TYPE.FREE, parent: 0, size: 0, mtimeMs: 0, ctimeMs: 0, indirect: new Array<number>(INDIRECT_POINTERS).fill(0), direct: new Array<number>(DIRECT_POINTERS).fill(0) };
}

export function encodeInode(n: Inode, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  b.writeUInt32LE(n.ino, 8);
  b.writeUInt32LE(n.gen >>> 0, 12);
  b.writeUInt8(n.type, 16);
  b.writeUInt32LE(n.parent, 20);
  writeU64(b, n.size, 24);
  b.writeDoubleLE(n.mtimeMs, 32);
  b.writeDoubleLE(n.ctimeMs, 40);
  for (let i = 0; i < INDIRECT_POINTERS; i++) b.writeUInt32LE(n.indirect[i]!, 48 + i * 4);
  for (let i = 0; i < DIRECT_POINTERS; i++) b.writeUInt32LE(n.direct[i]!, 80 + i * 4);
  return seal(b, INODE_MAGIC);
}

export function decodeInode(b: Buffer, ino: number, lba: number, maxPointer: number): Inode {
  if (!verifySector(b, INODE_MAGIC, 'inode', lba)) return freeInode(ino, 0);
  const n: Inode = { ino: b.readUInt32LE(8), gen: b.readUInt32LE(12), type: b.readUInt8(16), parent: b.readUInt32LE(20), size: readU64(b, 24), mtimeMs: b.readDoubleLE(32), ctimeMs: b.readDoubleLE(40), indirect: [], direct: [] };
  for (let i = 0; i < INDIRECT_POINTERS; i++) n.indirect.push(b.readUInt32LE(48 + i * 4));
  for (let i = 0; i < DIRECT_POINTERS; i++) n.direct.push(b.readUInt32LE(80 + i * 4));
  const badPtr = [...n.indirect, ...n.direct].find((p) => p > maxPointer);
  if (n.ino !== ino || n.type > FILE_TYPE.DIR || badPtr !== undefined) {
    throw new EsxError('CORRUPT', `inode ${ino} at LBA ${lba} is inconsistent (ino ${n.ino}, type ${n.type}${badPtr !== undefined ? `, pointer ${badPtr} past the data area` : ''})`, { lba, ino });
  }
  return n;
}

// ---- pointer sectors ---------------------------------------------------------------------------

export function pointersPerSector(sectorSize: number): number {
  return (sectorSize - 16) / 4;
}

export function encodePointers(ino: number, gen: number, ptrs: Uint32Array, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  b.writeUInt32LE(ino, 8);
  b.writeUInt32LE(gen >>> 0, 12);
  for (let i = 0; i < ptrs.length; i++) b.writeUInt32LE(ptrs[i]!, 16 + i * 4);
  return seal(b, PTR_MAGIC);
}

export function decodePointers(b: Buffer, ino: number, gen: number, lba: number, maxPointer: number): Uint32Array {
  const n = pointersPerSector(b.length);
  const out = new Uint32Array(n);
  if (!verifySector(b, PTR_MAGIC, 'pointer sector', lba)) return out;
  if (b.readUInt32LE(8) !== ino || b.readUInt32LE(12) !== gen >>> 0) throw new EsxError('CORRUPT', `pointer sector at LBA ${lba} belongs to inode ${b.readUInt32LE(8)} gen ${b.readUInt32LE(12)}, not ${ino} gen ${gen}`, { lba, ino });
  for (let i = 0; i < n; i++) {
    const p = b.readUInt32LE(16 + i * 4);
    if (p > maxPointer) throw new EsxError('CORRUPT', `pointer sector at LBA ${lba} points past the data area (${p})`, { lba, ino });
    out[i] = p;
  }
  return out;
}

// ---- directory-entry sectors -------------------------------------------------------------------

export const DIRENT_BYTES = 120;

export interface Dirent {
  ino: number;
  gen: number;
  type: number;
  name: string;
}

export function direntsPerSector(sectorSize: number): number {
  return Math.floor((sectorSize - 16) / DIRENT_BYTES);
}

/** Slots of a directory sector; null = empty. */
export type DirSector = (Dirent | null)[];

export function encodeDirSector(dirIno: number, index: number, slots: DirSector, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  b.writeUInt32LE(dirIno, 8);
  b.writeUInt32LE(index, 12);
  slots.forEach((e, i) => {
    if (!e) return;
    const o = 16 + i * DIRENT_BYTES;
    const name = Buffer.from(e.name, 'utf8');
    b.writeUInt32LE(e.ino, o);
    b.writeUInt32LE(e.gen >>> 0, o + 4);
    b.writeUInt8(e.type, o + 8);
    b.writeUInt8(name.length, o + 9);
    name.copy(b, o + 10);
  });
  return seal(b, DIR_MAGIC);
}

export function decodeDirSector(b: Buffer, dirIno: number, index: number, lba: number, maxIno: number): DirSector {
  const n = direntsPerSector(b.length);
  const slots: DirSector = new Array<Dirent | null>(n).fill(null);
  if (!verifySector(b, DIR_MAGIC, 'directory sector', lba)) return slots;
  if (b.readUInt32LE(8) !== dirIno || b.readUInt32LE(12) !== index) throw new EsxError('CORRUPT', `directory sector at LBA ${lba} belongs to directory ${b.readUInt32LE(8)} index ${b.readUInt32LE(12)}, not ${dirIno} index ${index}`, { lba });
  for (let i = 0; i < n; i++) {
    const o = 16 + i * DIRENT_BYTES;
    const ino = b.readUInt32LE(o);
    if (ino === 0) continue;
    const len = b.readUInt8(o + 9);
    const type = b.readUInt8(o + 8);
    if (ino >= maxIno || len === 0 || len > MAX_NAME_BYTES || (type !== FILE_TYPE.FILE && type !== FILE_TYPE.DIR)) {
      throw new EsxError('CORRUPT', `directory sector at LBA ${lba}: bad entry ${i} (ino ${ino}, type ${type}, name length ${len})`, { lba });
    }
    slots[i] = { ino, gen: b.readUInt32LE(o + 4), type, name: b.subarray(o + 10, o + 10 + len).toString('utf8') };
  }
  return slots;
}

