/**
 * Mode pages of a logical unit (SPC-4 7.5, SBC-3 6.5) and MODE SENSE / MODE SELECT parameter
 * data. Pages: 01h read-write error recovery, 08h caching (WCE changeable), 0Ah control
 * (D_SENSE and SWP changeable), 1Ch informational exceptions control. Saved pages are not
 * implemented (PC=11b and SP=1 are refused). MODE SELECT checks every byte of every page
 * against the changeable mask before it applies anything.
 */
import { be16 } from './cdb.js';
import { ASC, type AscPair, type FieldPointer } from './sense.js';

export const PAGE = {
  READ_WRITE_ERROR_RECOVERY: 0x01,
  CACHING: 0x08,
  CONTROL: 0x0a,
  INFORMATIONAL_EXCEPTIONS: 0x1c,
  ALL: 0x3f,
} as const;

export const PAGE_CONTROL = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;

interface PageDef {
  code: number;
  defaults: Buffer;
  changeable: Buffer;
}

function pageBuf(code: number, body: number[]): Buffer {
  return Buffer.from([code, body.length, ...body]);
}

const DEFS: PageDef[] = [
  {
    code: PAGE.READ_WRITE_ERROR_RECOVERY,
    defaults: pageBuf(0x01, [0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // AWRE, ARRE
    changeable: pageBuf(0x01, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  },
  {
    code: PAGE.CACHING,
    defaults: pageBuf(0x08, [0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // WCE
    changeable: pageBuf(0x08, [0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  },
  {
    code: PAGE.CONTROL,
    // D_SENSE 0, QUEUE ALGORITHM MODIFIER 1 (unrestricted), SWP 0, BUSY TIMEOUT PERIOD unlimited
    defaults: pageBuf(0x0a, [0x00, 0x10, 0x00, 0x00, 0, 0, 0xff, 0xff, 0, 0]),
    changeable: pageBuf(0x0a, [0x04, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0]),
  },
  {
    code: PAGE.INFORMATIONAL_EXCEPTIONS,
    defaults: pageBuf(0x1c, [0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // DEXCPT
    changeable: pageBuf(0x1c, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  },
];

export type ModeSelectError = { asc: AscPair; field?: FieldPointer };

export class ModePages {
  private readonly current = new Map<number, Buffer>();

  constructor() {
    for (const d of DEFS) this.current.set(d.code, Buffer.from(d.defaults));
  }

  /** Descriptor format sense data (control page D_SENSE). */
  get dSense(): boolean {
    return (this.current.get(PAGE.CONTROL)![2]! & 0x04) !== 0;
  }

  /** Software write protect (control page SWP). */
  get swp(): boolean {
    return (this.current.get(PAGE.CONTROL)![4]! & 0x08) !== 0;
  }

  /** Write cache enabled (caching page WCE); when clear every write is written through. */
  get wce(): boolean {
    return (this.current.get(PAGE.CACHING)![2]! & 0x04) !== 0;
  }

  /** Revert every page to its defaults (not used by resets: mode pages survive them here). */
  reset(): void {
    for (const d of DEFS) this.current.set(d.code, Buffer.from(d.defaults));
  }

  /** Pages for MODE SENSE, or null if page/subpage is not supported. PC must not be SAVED. */
  pages(pc: number, pageCode: number, subpage: number): Buffer | null {
    const pick = (d: PageDef) => (pc === PAGE_CONTROL.CHANGEABLE ? d.changeable : pc === PAGE_CONTROL.DEFAULT ? d.defaults : this.current.get(d.code)!);
    if (pageCode === PAGE.ALL) {
      if (subpage !== 0x00 && subpage !== 0xff) return null;
      return Buffer.concat(DEFS.map((d) => Buffer.from(pick(d))));
    }
    if (subpage !== 0x00) return null;
    const d = DEFS.find((x) => x.code === pageCode);
    return d ? Buffer.from(pick(d)) : null;
  }

  /**
   * Apply the pages of a MODE SELECT parameter list (the part after header and block
   * descriptors, starting at `offset` in `data`). All or nothing. Returns the error, or the
   * list of page codes whose current value changed.
   */
  select(data: Buffer, offset: number): { error: ModeSelectError } | { changed: number[] } {
    const staged = new Map<number, Buffer>();
    let p = offset;
    while (p < data.length) {
      if (data.length - p < 2) return { error: { asc: ASC.PARAMETER_LIST_LENGTH_ERROR } };
      const code = data[p]! & 0x3f;
      if (data[p]! & 0x40) return { error: { asc: ASC.INVALID_FIELD_IN_PARAMETER_LIST, field: { cdb: false, byte: p, bit: 6 } } }; // no subpages here
      const def = DEFS.find((d) => d.code === code);
      if (!def) return { error: { asc: ASC.INVALID_FIELD_IN_PARAMETER_LIST, field: { cdb: false, byte: p } } };
      const len = data[p + 1]!;
      if (len !== def.defaults.length - 2) return { error: { asc: ASC.INVALID_FIELD_IN_PARAMETER_LIST, field: { cdb: false, byte: p + 1 } } };
      if (p + 2 + len > data.length) return { error: { asc: ASC.PARAMETER_LIST_LENGTH_ERROR } };
      const cur = staged.get(code) ?? this.current.get(code)!;
      const next = Buffer.from(cur);
      for (let i = 2; i < 2 + len; i++) {
        const v = data[p + i]!;
        const diff = (v ^ cur[i]!) & ~def.changeable[i]!;
        if (diff) return { error: { asc: ASC.INVALID_FIELD_IN_PARAMETER_LIST, field: { cdb: false, byte: p + i, bit: 31 - Math.clz32(diff) } } };
        next[i] = v;
      }
      staged.set(code, next);
      p += 2 + len;
    }
    const changed: number[] = [];
    for (const [code, buf] of staged) {
      if (!buf.equals(this.current.get(code)!)) changed.push(code);
      this.current.set(code, buf);
    }
    return { changed };
  }
}

/** Block descriptor length and page offset of a MODE SELECT(6/10) parameter list header. */
export function modeSelectHeader(data: Buffer, ten: boolean): { bdLength: number; headerLength: number; longLba: boolean } | null {
  const headerLength = ten ? 8 : 4;
  if (data.length < headerLength) return null;
  return ten ? { headerLength, bdLength: be16(data, 6), longLba: (data[4]! & 0x01) !== 0 } : { headerLength, bdLength: data[3]!, longLba: false };
}
