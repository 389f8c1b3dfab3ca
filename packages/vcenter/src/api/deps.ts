/** What the API routes need from the rest of vcenter. */
import type { Logger } from '@esxemu/shared';
import type { Store } from '../db/store.js';
import type { HostServer } from '../hostlink/host-server.js';
import type { InventoryView } from '../inventory/views.js';
import type { VmPowerTasks } from '../tasks/vm-power-tasks.js';
import type { VmService } from '../vms/vm-service.js';
import type { StreamHub } from './stream.js';

export interface ApiDeps {
  token: string;
  logger: Logger;
  store: Store;
  view: InventoryView;
  vms: VmService;
  power: VmPowerTasks;
  hostServer: HostServer;
  stream: StreamHub;
}
