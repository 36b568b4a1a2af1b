// Data-parallel training on the CPU backend under `mpirun -np 2`: the same data, seed and global
// batch give the parameters, loss and HR@10 of a single process (within float tolerance), so a
// wrong shard, average or random stream fails this test. Also: ranks that load different data
// are stopped with a message, and a rank that fails ends the whole job instead of hanging it.
import * as fs from 'node:fs';
import * as path from 'node:path';

import t from 'tap';

import { loadModel, prepare } from '../lib/index';
import { CLI, haveMpirun, runJob, tmpdir, write } from './helpers';

t.test('mpirun -np 2 trains exactly like one process', { skip: haveMpirun ? false : 'mpirun is not installed (Debian: openmpi-bin)' }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const { dir: data, meta } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 1 });
  const samples = meta.counts.trainPositives * 5;
  const batch = Math.ceil(samples / 2) + 1; // two steps, the first split unevenly (odd size)
  t.equal(batch % 2, 1);
  // eps 1e-3 makes Adam's step depend on the gradient's scale, so a wrong average shows too.
  const args = (ck: string) => ['train', '--data', data, '-b', String(batch), '-e', '1', '--eval-after', '0', '--seed', '5', '--eps', '1e-3', '--backend', 'cpu', '--checkpoint-dir', ck, '--log-path', path.join(ck, 'log.json'), '--json'];
  const one = runJob(process.execPath, [CLI, ...args(path.join(dir, 'one'))], home);
  t.equal(one.status, 0, one.stderr);
  const two = runJob('mpirun', ['-np', '2', '--oversubscribe', process.execPath, CLI, ...args(path.join(dir, 'two'))], home);
  t.equal(two.status, 0, two.stderr);
  t.match(two.stderr, /2 ranks over mpi/);
  const s1 = JSON.parse(one.stdout), s2 = JSON.parse(two.stdout);
  t.equal(s2.info.worldSize, 2);
  t.ok(Math.abs(s1.epochs[0].loss - s2.epochs[0].loss) < 1e-6 * s1.epochs[0].loss, `loss ${s1.epochs[0].loss} vs ${s2.epochs[0].loss}`);
  t.ok(Math.abs(s1.bestHr - s2.bestHr) <= 1 / 300 + 1e-12, `HR@10 ${s1.bestHr} vs ${s2.bestHr}`);
  const p1 = loadModel(path.join(dir, 'one', 'last.safetensors')).params;
  const p2 = loadModel(path.join(dir, 'two', 'last.safetensors')).params;
  let maxDiff = 0, moved = 0;
  for (let i = 0; i < p1.length; i++) maxDiff = Math.max(maxDiff, Math.abs(p1[i] - p2[i]));
  for (let i = 0; i < p1.length; i++) if (Math.abs(p1[i]) > 0) moved++;
  t.ok(maxDiff < 1e-5, `parameters agree after two steps: max |difference| ${maxDiff.toExponential(2)}`);
  t.ok(moved > p1.length / 2);
});

t.test('--distributed with one rank goes through MPI and changes nothing', { skip: haveMpirun ? false : 'mpirun is not installed' }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const { dir: data } = await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 1 });
  const args = (ck: string) => ['train', '--data', data, '-b', '4096', '-e', '2', '--eval-after', '0', '--seed', '5', '--threads', '1', '--backend', 'cpu', '--checkpoint-dir', ck, '--log-path', path.join(ck, 'log.json'), '--json'];
  const plain = runJob(process.execPath, [CLI, ...args(path.join(dir, 'plain'))], home);
  const viaMpi = runJob('mpirun', ['-np', '1', process.execPath, CLI, ...args(path.join(dir, 'mpi')), '--distributed'], home);
  t.equal(viaMpi.status, 0, viaMpi.stderr);
  const a = JSON.parse(plain.stdout), b = JSON.parse(viaMpi.stdout);
  t.match(b.info.communicator, /^mpi /);
  t.equal(a.info.communicator, 'none');
  t.same(b.epochs.map((e: { loss: number }) => e.loss), a.epochs.map((e: { loss: number }) => e.loss), 'identical losses');
  t.same(Array.from(loadModel(path.join(dir, 'mpi', 'last.safetensors')).params), Array.from(loadModel(path.join(dir, 'plain', 'last.safetensors')).params), 'identical parameters');
});

t.test('ranks that load different datasets are stopped', { skip: haveMpirun ? false : 'mpirun is not installed' }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  await prepare('synthetic:tiny', { out: path.join(dir, 'data0'), seed: 1 });
  await prepare('synthetic:tiny', { out: path.join(dir, 'data1'), seed: 2 });
  const script = `exec "${process.execPath}" "${CLI}" train --data "${dir}/data$OMPI_COMM_WORLD_RANK" -b 4096 -e 1 --backend cpu --log-path "${dir}/log" --checkpoint-dir "${dir}/ck"`;
  const r = runJob('mpirun', ['-np', '2', '--oversubscribe', 'sh', '-c', script], home);
  t.not(r.status, 0);
  t.match(r.stderr, /rank 1 loaded a different dataset than rank 0 \(fingerprint [0-9a-f]+ vs [0-9a-f]+\): every rank must read the same prepared dataset/);
});

t.test('a failing rank ends the whole job', { skip: haveMpirun ? false : 'mpirun is not installed' }, async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  await prepare('synthetic:tiny', { out: path.join(dir, 'data'), seed: 1 });
  const script = `if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then extra="--load-checkpoint-path ${dir}/missing.safetensors"; fi; exec "${process.execPath}" "${CLI}" train --data "${dir}/data" -b 4096 -e 50 --backend cpu --log-path "${dir}/log" --checkpoint-dir "${dir}/ck" $extra`;
  const started = Date.now();
  const r = runJob('mpirun', ['-np', '2', '--oversubscribe', 'sh', '-c', script], home);
  t.not(r.status, 0);
  t.match(r.stderr, /ncf-native \(rank 1\): error: .*missing\.safetensors: no such file/);
  t.ok(Date.now() - started < 120_000, 'rank 0 did not wait forever');
});

// scripts/mpirun-train.sh: the dataset prepared once, its folder passed to every rank, and the
// environment ncf-native reads forwarded to ranks on other nodes (-x): every NCF_* and NCCL_*
// variable that is set (the kernel switches must be the same on every rank), nothing unset.
t.test('scripts/mpirun-train.sh prepares once and forwards the environment', async (t) => {
  const home = tmpdir();
  const dir = tmpdir();
  const script = path.join(__dirname, '..', '..', 'scripts', 'mpirun-train.sh');
  const launcher = write(dir, 'fake-mpirun', '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n');
  fs.chmodSync(launcher, 0o755);
  const hosts = write(dir, 'hosts', 'localhost slots=4\n');
  const env = { MPIRUN: launcher, NCF_CUDA_AUTOTUNE: '1', NCCL_IB_HCA: 'mlx5', NCCL_DEBUG: '' };
  const r = runJob('bash', [script, '3', '--hostfile', hosts, '--data', 'synthetic:tiny', '-b', '4096', '--amp'], home, env);
  t.equal(r.status, 0, r.status === 0 ? 'the script runs the launcher' : r.stderr);
  const argv = r.stdout.trim().split('\n');
  t.same(argv.slice(0, 4), ['-np', '3', '--hostfile', hosts], 'the processes and the hostfile');
  const forwarded = argv.flatMap((a, i) => (a === '-x' ? [argv[i + 1]] : []));
  for (const v of ['PATH', 'NCF_NATIVE_HOME', 'NCF_CUDA_AUTOTUNE', 'NCCL_IB_HCA']) t.ok(forwarded.includes(v), `-x ${v}`);
  t.notOk(forwarded.includes('NCCL_DEBUG'), 'an empty variable is not forwarded');
  const train = argv.indexOf('train');
  t.ok(train > 0 && argv[train - 1].endsWith(path.join('dist', 'bin', 'ncf-native.js')), 'then node runs the CLI');
  t.same(argv.slice(train + 1, train + 2), ['--data']);
  t.ok(fs.existsSync(path.join(argv[train + 2], 'meta.json')), `with the prepared folder (${argv[train + 2]})`);
  t.same(argv.slice(train + 3), ['-b', '4096', '--amp'], 'and the other options as given');
  if (!haveMpirun) return;
  const real = runJob('bash', [script, '2', '--backend', 'cpu', '--data', 'synthetic:tiny', '-b', '4096', '-e', '1', '--eval-after', '0',
    '--checkpoint-dir', path.join(dir, 'ck'), '--log-path', path.join(dir, 'log.json'), '--json'], home, { MPIRUN_ARGS: '--oversubscribe' });
  t.equal(real.status, 0, real.status === 0 ? 'and with mpirun, two ranks train' : real.stderr);
  t.equal(JSON.parse(real.stdout).info.worldSize, 2);
});
