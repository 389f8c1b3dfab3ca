/**
 * Guest memory on both ends of a vMotion: the source reads pages straight out of machine
 * memory through the VM's pmap, the destination writes them into a pmap of its own.
 *
 *   source: pageView(pmap, gpn)    a view of the machine page, or null for a page the guest
 *                                   never touched (it reads as zeros); encodePages sends the
 *                                   view as it is, so no page is copied on the source
 *           pageBatches(gpns)      the pages to send, in PAGES-record batches
 *   destination: applyPages(pmap)   a raw page gets a machine page (faulted in) and its bytes;
 *                                   a zero page is zeroed if it is mapped and left unmapped if
 *                                   not, so a guest's untouched memory costs nothing on arrival
 *
 * A page sent during pre-copy may change before the switchover; the dirty log (on only during
 * the migration) makes the source send it again, and the last version wins on the destination
 * because records are applied in stream order.
 */
import { PAGE_SIZE } from '@esxemu/shared/core';
import { PMAP_NONE } from '@esxemu/guest';
import type { Pmap } from '../vmkernel/memory/pmap.js';
import { MAX_PAGES_PER_RECORD, type PageEntry } from './stream.js';

/** The guest page as it is in machine memory (a view, not a copy), or null when never mapped. */
export function pageView(pmap: Pmap, gpn: number): Uint8Array | null {
  const mpn = Atomics.load(pmap.pmap, gpn);
  if (mpn === PMAP_NONE) return null;
  return pmap.machine.subarray(mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE);
}

/** The given guest pages as PAGES-record batches of views. */
export function* pageBatches(pmap: Pmap, gpns: Iterable<number>): Generator<PageEntry[]> {
  let batch: PageEntry[] = [];
  for (const gpn of gpns) {
    batch.push({ gpn, data: pageView(pmap, gpn) });
    if (batch.length === MAX_PAGES_PER_RECORD) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

/**
 * Write received pages into the destination pmap. Throws INSUFFICIENT_RESOURCES (from the
 * pmap's fault) when the destination host runs out of machine memory: the migration aborts and
 * the VM goes on running on the source.
 */
export function applyPages(pmap: Pmap, pages: readonly PageEntry[]): { raw: number; zero: number } {
  let raw = 0;
  let zero = 0;
  for (const p of pages) {
    if (p.data) {
      const mpn = pmap.fault(p.gpn);
      pmap.machine.set(p.data, mpn * PAGE_SIZE);
      raw++;
    } else {
      const mpn = Atomics.load(pmap.pmap, p.gpn);
      if (mpn !== PMAP_NONE) pmap.machine.fill(0, mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE);
      zero++;
    }
  }
  return { raw, zero };
}
