/** `ncf-native prepare <source>`: download / read / generate and preprocess a dataset. */
import type { Command } from 'commander';

import { prepare } from '../data/prepare';
import { action, intArg, prepareReporter } from './common';

export function registerPrepare(program: Command): void {
  program
    .command('prepare')
    .description('prepare a dataset: ml-20m, ml-1m (downloaded), synthetic[:SHAPE], or a CSV/TSV/.dat file, zip or folder')
    .argument('<source>', 'ml-20m | ml-1m | synthetic | synthetic:SHAPE | path to a file, zip or folder')
    .option('-o, --out <dir>', 'output folder (default: in the cache, $NCF_NATIVE_HOME or ~/.cache/ncf-native)')
    .option('--source <path>', 'for ml-20m/ml-1m: an already downloaded zip, unpacked folder or ratings file')
    .option('--shape <name>', 'synthetic data shape: ml-20m, ml-1m, ml-100k, small, tiny')
    .option('--user-col <col>', 'user id column: header name or 0-based index')
    .option('--item-col <col>', 'item id column: header name or 0-based index')
    .option('--time-col <col>', "timestamp column: name, 0-based index, or 'none'")
    .option('--delimiter <d>', "field delimiter: ',' ';' '|' '::' 'tab' 'space' (default: detected)")
    .option('--header', 'the first line is a header (default: detected)')
    .option('--no-header', 'the first line is data')
    .option('--min-ratings <n>', 'drop users with fewer interactions', intArg(1), 20)
    .option('--test-negatives <n>', 'test negatives per user', intArg(1, 10000), 100)
    .option('--seed <n>', 'seed for test negatives and synthetic data', intArg(0), 0)
    .option('--threads <n>', 'threads (default: all available)', intArg(1, 1024))
    .option('--mirror <url>', 'download MovieLens from this base URL (or set $NCF_NATIVE_MIRROR)')
    .option('--force', 'prepare again even if the output is up to date')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (source: string, o: Record<string, unknown>) => {
        const r = await prepare(source, {
          out: o.out as string | undefined,
          sourcePath: o.source as string | undefined,
          shape: o.shape as string | undefined,
          userCol: o.userCol as string | undefined,
          itemCol: o.itemCol as string | undefined,
          timeCol: o.timeCol === 'none' ? null : (o.timeCol as string | undefined),
          delimiter: o.delimiter as string | undefined,
          header: o.header as boolean | undefined,
          minRatings: o.minRatings as number,
          testNegatives: o.testNegatives as number,
          seed: o.seed as number,
          threads: o.threads as number | undefined,
          force: !!o.force,
          mirror: o.mirror as string | undefined,
          onProgress: prepareReporter(!!o.json),
        });
        if (o.json) {
          process.stdout.write(JSON.stringify({ dir: r.dir, skipped: r.skipped, meta: r.meta }, null, 2) + '\n');
          return;
        }
        const c = r.meta.counts;
        const what = r.skipped ? 'already prepared' : `prepared in ${r.meta.prepareSeconds.toFixed(2)} s`;
        process.stdout.write(
          `${r.meta.name}: ${what}: ${c.users} users, ${c.items} items, ${c.trainPositives} training positives, ` +
            `${c.testPositives} test users (${c.rows} rows read, ${c.droppedUsers} users under ${r.meta.options.minRatings} ` +
            `interactions dropped, ${c.duplicates} duplicates removed)\n${r.dir}\n`,
        );
      }),
    );
}
