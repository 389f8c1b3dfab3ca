/**
 * Entry point of a VM's worker thread: the VMkernel starts it with
 * `new Worker(new URL('../vmm/worker.js', import.meta.url), { workerData: VmmInit })`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { VmmInit } from './messages.js';
import { runVmm } from './vmm.js';

if (!parentPort) throw new Error('the VMM runs in a worker thread started by the VMkernel');
void runVmm(workerData as VmmInit, parentPort);
