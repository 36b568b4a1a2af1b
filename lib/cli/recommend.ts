/** `ncf-native recommend`: top-K items for a user from a checkpoint. */
import type { Command } from 'commander';
import { Option } from 'commander';

import { InvalidArgumentError } from '../errors';
import { NeuMF } from '../model/neumf';
import { action, intArg } from './common';

function numberList(name: string, v: string): number[] {
  return v.split(',').filter(Boolean).map((s) => {
    const n = Number(s);
    if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`option '${name}' must be a comma-separated list of integer ids, got '${s}'`, name);
    return n;
  });
}

export function registerRecommend(program: Command): void {
  program
    .command('recommend')
    .description("top-K items for one or more users (the dataset's original ids)")
    .requiredOption('--checkpoint <file>', 'model checkpoint (.safetensors)')
    .option('--data <dir>', 'prepared dataset (default: the one the checkpoint was trained on)')
    .requiredOption('--user <ids>', 'user id, or several separated by commas')
    .option('-k, --k <k>', 'how many items', intArg(1, 100000), 10)
    .option('--include-seen', 'also recommend items the user already interacted with')
    .option('--candidates <ids>', 'rank only these item ids (comma-separated)')
    .addOption(new Option('--device <name>', 'compute backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--json', 'print as JSON')
    .action(
      action(async (o: Record<string, unknown>) => {
        const users = numberList('--user', o.user as string);
        const model = await NeuMF.load(o.checkpoint as string, {
          data: o.data as string | undefined,
          device: o.device as 'auto' | 'cpu' | 'cuda',
        });
        try {
          if (!model.dataset && !o.data)
            process.stderr.write('note: the dataset of this checkpoint was not found, so ids are dense indices and seen items are kept\n');
          const recs = await model.recommend(users, {
            k: o.k as number,
            excludeSeen: !o.includeSeen && !!model.dataset,
            candidates: o.candidates ? numberList('--candidates', o.candidates as string) : undefined,
          });
          if (o.json) {
            process.stdout.write(JSON.stringify(recs, null, 2) + '\n');
            return;
          }
          for (const r of recs) {
            process.stdout.write(`user ${r.user}\n`);
            r.items.forEach((item, i) => process.stdout.write(`  ${String(i + 1).padStart(3)}  item ${String(item).padEnd(10)} ${r.scores[i].toFixed(4)}\n`));
          }
        } finally {
          model.close();
        }
      }),
    );
}
