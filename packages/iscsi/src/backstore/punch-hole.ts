/**
 * Give a file range back to the filesystem. Node has no fallocate(2), so this runs util-linux's
 * `fallocate --punch-hole --keep-size` when that binary exists: best effort, one at a time,
 * bounded by a timeout. When it is missing or fails, the caller writes zeros instead.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const CANDIDATES = ['/usr/bin/fallocate', '/bin/fallocate', '/usr/sbin/fallocate'];
const PUNCH_TIMEOUT_MS = 10_000;

let binary: string | null | undefined;
let chain: Promise<unknown> = Promise.resolve();

export function fallocateBinary(): string | null {
  if (binary !== undefined) return binary;
  binary = null;
  for (const c of CANDIDATES) {
    try {
      accessSync(c, constants.X_OK);
      binary = c;
      break;
    } catch {
      // try the next one
    }
  }
  return binary;
}

/** Punch [offset, offset+length) out of `path`; resolves true if the hole was punched. */
export function punchHole(path: string, offset: number, length: number): Promise<boolean> {
  const bin = fallocateBinary();
  if (!bin || length <= 0) return Promise.resolve(false);
  const run = chain.then(
    () =>
      new Promise<boolean>((resolve) => {
        execFile(bin, ['--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), path], { timeout: PUNCH_TIMEOUT_MS, windowsHide: true }, (err) =>
          resolve(!err),
        );
      }),
  );
  chain = run;
  return run;
}
