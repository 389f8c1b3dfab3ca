/**
 * <dataDir>/vmkernel.log, in the spirit of ESX's /var/log/vmkernel: one line per event,
 * microsecond timestamps, the cpu and world that logged it, the module, the message:
 *
 *   2026-11-22T02:41:22.123456Z cpu0:1234)VM: vm01 powered on (memstress, 256 MiB)
 *
 * Lines are few (power events, migrations) and must survive a crash of the process, so each is
 * written synchronously. A line is capped in length; a write error is reported once and the log
 * goes quiet rather than taking the host down.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isoMicros, type Logger } from '@esxemu/shared';

export const VMKERNEL_LOG_FILE = 'vmkernel.log';
const MAX_LINE_CHARS = 2048;

export class VmkernelLog {
  private fd: number | null;
  readonly path: string;

  constructor(
    dataDir: string,
    private readonly logger: Logger,
  ) {
    mkdirSync(dataDir, { recursive: true });
    this.path = join(dataDir, VMKERNEL_LOG_FILE);
    this.fd = openSync(this.path, 'a');
  }

  /**
   * Write one line. `world` is the world (thread) id that acts: the VM's worker thread id for
   * VM events, the process id for the VMkernel itself.
   */
  log(module: string, msg: string, world: number = process.pid, cpu = 0): void {
    if (this.fd === null) return;
    const text = `${isoMicros()} cpu${cpu}:${world})${module}: ${msg}`.replace(/[\r\n]+/g, ' ').slice(0, MAX_LINE_CHARS);
    try {
      writeSync(this.fd, `${text}\n`);
    } catch (err) {
      this.logger.error({ err, path: this.path }, 'cannot write the vmkernel log; it stops here');
      this.close();
    }
  }

  close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = null;
  }
}
