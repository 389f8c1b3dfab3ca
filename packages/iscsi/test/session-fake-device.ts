/**
 * A tiny SCSI device for the session tests: enough SCSI to exercise the transport, with hooks to
 * hold a command until it is aborted.
 */
import { SAM_STAT, TMF_RESPONSE, type Nexus, type ScsiRequest, type ScsiResponse, type ScsiTargetDevice, type TmfFunction } from '../src/scsi/types.js';

/** Opcode of the fake device's "wait until aborted (or released)" command. */
export const SLOW_OPCODE = 0xc0;

/**
 * A tiny SCSI device for the session tests: 512-byte blocks in memory; TEST UNIT READY, READ(10),
 * WRITE(10) (reporting dataOutLength), INQUIRY (36 bytes), REQUEST SENSE, and SLOW_OPCODE,
 * which completes only when aborted or released. Records what the session layer told it.
 */
export class FakeDevice implements ScsiTargetDevice {
  readonly blocks: Buffer;
  readonly events: string[] = [];
  readonly requests: ScsiRequest[] = [];
  private slowRelease: (() => void)[] = [];
  slowStarted = 0;
  slowAborted = 0;

  constructor(blocks = 2048) {
    this.blocks = Buffer.alloc(blocks * 512);
  }

  releaseSlow(): void {
    for (const r of this.slowRelease) r();
    this.slowRelease = [];
  }

  async execute(req: ScsiRequest): Promise<ScsiResponse> {
    this.requests.push(req);
    const c = req.cdb;
    const good = (data: Buffer | null = null): ScsiResponse => ({ status: SAM_STAT.GOOD, data, sense: null });
    switch (c[0]) {
      case 0x00:
        return good();
      case 0x12: {
        const d = Buffer.alloc(36);
        d[2] = 6;
        d[3] = 2;
        d[4] = 31;
        Buffer.from('ESXEMU  FAKE DEVICE     0001').copy(d, 8);
        return good(d.subarray(0, Math.min(36, c.readUInt16BE(3))));
      }
      case 0x28: {
        const lba = c.readUInt32BE(2);
        const n = c.readUInt16BE(7);
        if ((lba + n) * 512 > this.blocks.length) return { status: SAM_STAT.CHECK_CONDITION, data: null, sense: senseLbaOutOfRange() };
        return good(Buffer.from(this.blocks.subarray(lba * 512, (lba + n) * 512)));
      }
      case 0x2a: {
        const lba = c.readUInt32BE(2);
        const n = c.readUInt16BE(7);
        const want = n * 512;
        if ((lba + n) * 512 > this.blocks.length) return { status: SAM_STAT.CHECK_CONDITION, data: null, sense: senseLbaOutOfRange(), dataOutLength: want };
        const d = req.dataOut ?? Buffer.alloc(0);
        d.copy(this.blocks, lba * 512, 0, Math.min(d.length, want));
        return { ...good(), dataOutLength: want };
      }
      case SLOW_OPCODE:
        this.slowStarted++;
        await new Promise<void>((resolve) => {
          this.slowRelease.push(resolve);
          req.signal.addEventListener('abort', () => {
            this.slowAborted++;
            resolve();
          });
        });
        return good();
      default:
        return { status: SAM_STAT.CHECK_CONDITION, data: null, sense: Buffer.from([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0]) };
    }
  }

  nexusAdded(n: Nexus): void {
    this.events.push(`added ${n.id}`);
  }

  nexusLost(n: Nexus): void {
    this.events.push(`lost ${n.id}`);
  }

  taskManagement(_n: Nexus, fn: TmfFunction, lun: number): number {
    this.events.push(`tmf ${fn} ${lun}`);
    return lun === 0 ? TMF_RESPONSE.COMPLETE : TMF_RESPONSE.LUN_DOES_NOT_EXIST;
  }

  lunsFor(): number[] {
    return [0];
  }
}

function senseLbaOutOfRange(): Buffer {
  return Buffer.from([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0]);
}
