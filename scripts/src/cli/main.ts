#!/usr/bin/env node
/**
 * esxemu: the command line of the emulated data center. Process commands run a vcenter, a host
 * or the iSCSI target; `cluster` starts a local cluster of them; the rest talk to vcenter's
 * public API. Errors print `esxemu: CODE: message` and exit 1.
 */
import { Command, CommanderError } from 'commander';
import { ESXEMU_VERSION, EsxError, toEsxError } from '@esxemu/shared';
import { registerClusterCommands } from './commands/cluster.js';
import { registerDatastoreCommands } from './commands/datastore.js';
import { registerInventoryCommands } from './commands/inventory.js';
import { registerServeCommands } from './commands/serve.js';

export function buildProgram(): Command {
  const program = new Command('esxemu')
    .version(ESXEMU_VERSION)
    .description('an emulated VMware-style data center: ESX hosts, an iSCSI SAN and vCenter as real processes')
    .option('--home <dir>', 'local cluster directory (env ESXEMU_HOME, default ~/.esxemu)')
    .option('--vcenter <url>', 'vcenter URL (env ESXEMU_VCENTER, default: the local cluster)')
    .option('--token <token>', 'API token (env ESXEMU_TOKEN, default: the local cluster token file)')
    .option('--json', 'print JSON instead of tables')
    .showHelpAfterError()
    .configureOutput({
      // Usage errors get the same stable code as every other bad input.
      outputError: (str, write) => write(`esxemu: INVALID_ARGUMENT: ${str.replace(/^error: /, '')}`),
    })
    .exitOverride();
  registerClusterCommands(program);
  registerServeCommands(program);
  registerInventoryCommands(program);
  registerDatastoreCommands(program);
  return program;
}

async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const e = err instanceof EsxError ? err : toEsxError(err);
    process.stderr.write(`esxemu: ${e.code}: ${e.message}\n`);
    process.exitCode = 1;
  }
}

await main();
