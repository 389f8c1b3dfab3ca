/**
 * Serializing a PDU: BHS, AHS, header digest, data segment, padding, data digest. Returns the
 * pieces to hand to the socket in order (no copy of the data segment), and a helper that writes
 * them corked so they leave in as few TCP segments as possible.
 */
import type { Socket } from 'node:net';
import { crc32cv, digestBytes } from './digest.js';
import { padding, type Pdu } from './pdu.js';

export interface DigestSettings {
  headerDigest: boolean;
  dataDigest: boolean;
}

const PAD = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)] as const;

export function encodePdu(pdu: Pdu, d: DigestSettings): Buffer[] {
  pdu.syncLengths();
  const parts: Buffer[] = [pdu.bhs];
  if (pdu.ahs.length) parts.push(pdu.ahs);
  if (d.headerDigest) parts.push(digestBytes(crc32cv(pdu.ahs.length ? [pdu.bhs, pdu.ahs] : [pdu.bhs])));
  if (pdu.data.length) {
    const pad = PAD[padding(pdu.data.length)]!;
    parts.push(pdu.data);
    if (pad.length) parts.push(pad);
    if (d.dataDigest) parts.push(digestBytes(crc32cv(pad.length ? [pdu.data, pad] : [pdu.data])));
  }
  return parts;
}

/** Total bytes encodePdu will produce. */
export function encodedLength(pdu: Pdu, d: DigestSettings): number {
  const n = pdu.data.length;
  return 48 + pdu.ahs.length + (d.headerDigest ? 4 : 0) + (n ? n + padding(n) + (d.dataDigest ? 4 : 0) : 0);
}

/**
 * Write PDUs to a socket corked. Returns false when the socket's buffer is over its high-water
 * mark (the caller should wait for 'drain' before queuing more). A PDU's onSent runs from the
 * write callback of its last part: the socket has let go of all of its bytes.
 */
export function writePdus(socket: Socket, pdus: readonly Pdu[], d: DigestSettings): boolean {
  socket.cork();
  let ok = true;
  for (const pdu of pdus) {
    const parts = encodePdu(pdu, d);
    const last = parts.length - 1;
    for (let i = 0; i < last; i++) ok = socket.write(parts[i]!) && ok;
    const sent = pdu.onSent;
    ok = (sent ? socket.write(parts[last]!, () => sent()) : socket.write(parts[last]!)) && ok;
  }
  process.nextTick(() => socket.uncork());
  return ok;
}
