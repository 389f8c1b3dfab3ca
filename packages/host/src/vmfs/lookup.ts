/**
 * Lock-free lookups in the namespace, shared by a mounted host (vmfs.ts) and the read-only
 * observer (observer.ts): walk a path, list a directory, stat a file.
 *
 * Nothing here takes a lock or writes. A lookup reads the LUN fresh (no other host's metadata
 * is cached): directory sectors are written whole, so a reader sees an entry or not, and an
 * entry whose inode is free or of another generation is being created or removed right now
 * and reads as absent (directory.ts).
 */
import { EsxError } from '@esxemu/shared';
import type { BlockDevice } from './block-device.js';
import { splitPath } from './codec.js';
import { Directory } from './directory.js';
import { FileMap } from './filemap.js';
import type { Geometry } from './format.js';
import { FILE_TYPE, ROOT_INO, typeName, type FileType } from './inode.js';

export interface FileStat {
  path: string;
  name: string;
  type: FileType;
  ino: number;
  gen: number;
  size: number;
  /** Bytes of file blocks allocated (thin files: less than size). */
  allocatedBytes: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface DirEntry {
  name: string;
  type: FileType;
  ino: number;
}

/** Walk a path; NOT_FOUND when a component is missing (or being created/removed right now). */
export async function walk(dev: BlockDevice, geo: Geometry, parts: string[]): Promise<FileMap> {
  let map = await FileMap.load(dev, geo, ROOT_INO);
  for (let i = 0; i < parts.length; i++) {
    if (map.inode.type !== FILE_TYPE.DIR) throw new EsxError('NOT_FOUND', `'${parts.slice(0, i).join('/')}' is not a directory`);
    const hit = await new Directory(dev, geo, map).find(parts[i]!);
    if (!hit) throw new EsxError('NOT_FOUND', `'${parts.slice(0, i + 1).join('/')}' does not exist`, { path: parts.join('/') });
    const child = await FileMap.load(dev, geo, hit.entry.ino);
    if (child.inode.type === FILE_TYPE.FREE || child.inode.gen !== hit.entry.gen) throw new EsxError('NOT_FOUND', `'${parts.slice(0, i + 1).join('/')}' does not exist (being removed)`, { path: parts.join('/') });
    map = child;
  }
  return map;
}

/** The entries of a directory, sorted by name. */
export async function listDir(dev: BlockDevice, geo: Geometry, path: string): Promise<DirEntry[]> {
  const map = await walk(dev, geo, splitPath(path));
  if (map.inode.type !== FILE_TYPE.DIR) throw new EsxError('INVALID_ARGUMENT', `'${path}' is not a directory`);
  const out: DirEntry[] = [];
  for (const e of await new Directory(dev, geo, map).list()) out.push({ name: e.name, type: typeName(e.type), ino: e.ino });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export async function statPath(dev: BlockDevice, geo: Geometry, path: string): Promise<FileStat> {
  const parts = splitPath(path);
  const map = await walk(dev, geo, parts);
  const { data, pointerBlocks } = await map.allBlocks();
  const n = map.inode;
  return { path: '/' + parts.join('/'), name: parts[parts.length - 1] ?? '/', type: typeName(n.type), ino: n.ino, gen: n.gen, size: n.size, allocatedBytes: (data.size + pointerBlocks.length) * geo.sb.fileBlockSize, mtimeMs: n.mtimeMs, ctimeMs: n.ctimeMs };
}
