/**
 * The hidden layers after the first in one op each way (hidden_forward, hidden_backward: the CUDA
 * backend's tile kernels with NCF_CUDA_HIDDEN_FORWARD=1 (or =one-buffer) / NCF_CUDA_HIDDEN_BACKWARD=1;
 * fp16 or TF32)
 * against the CPU's chain of linear_forward / linear_backward calls, at ml-20m's layers, at a
 * deeper net of narrower ones and at one layer after the first, on row counts off the kernels'
 * tiles. Forward as training runs it: dropout and live units in every layer but the last; the
 * live units also against its outputs.
 *
 * The kernels launch one persistent block per multiprocessor, each looping over tiles of rows
 * while the next tile's rows arrive in its other staging buffer. At these row counts a GPU's
 * blocks take one tile each; on a runner with maxBlocks 2 (the self-test's second round) the two
 * blocks share 3 to 10 tiles at ml-20m's layers and 4 at the narrower ones (the last partial), each
 * looping over several as at full size.
 *
 * The backward op also takes the per-user sums of its lowest gradient (pair_row_sums' user side)
 * for a batch in user order: here users in runs of 1 to 40 rows and one of 150, longer than a tile
 * (it spans tiles, and with 2 blocks the edge of a block's range), with some users left out (zeros).
 */
import type { DropoutArgs, NativeOpRunner } from '../native';
import { type Check, type GemmPrecision, TOLERANCE, check, property } from './check';
import { liveBits } from './cpu-checks';
import { type Rng, exactlyEqual, relError } from '../util/random';

const SHAPES: readonly (readonly [readonly number[], number])[] = [[[256, 128, 64], 300], [[64, 48, 32, 16], 397], [[32, 16], 33]];

/**
 * Ascending users of `rows` rows, as described above, and how many users there are. The users
 * without rows: user 0, single ones between runs, 25 after the long run (if it is not the last),
 * and after the last run 12 at 300 rows, 3 at 397 and 40 at 33. The CUDA kernel zeroes them where
 * a batch has at least two rows a user (at 300 and 397 rows; at 33, a memset), gaps of up to 8
 * users from one thread, longer ones listed for its second kernel.
 */
function usersInRuns(rows: number, rng: Rng): { users: Uint32Array; nUsers: number } {
  const users = new Uint32Array(rows);
  let user = 1, longRun = false;
  for (let r = 0; r < rows; ) {
    let run = 1 + rng.below(rng.below(2) ? 4 : 40);
    const long = !longRun && r >= rows / 4;
    if (long) [run, longRun] = [150, true];
    users.fill(user, r, Math.min(rows, r + run));
    r += run;
    user += long ? 26 : rng.below(3) === 0 ? 2 : 1;
  }
  const after = rows < 100 ? 40 : rows % 2 ? 3 : 12;
  return { users, nUsers: users[rows - 1] + 1 + after };
}

/** Whether the CUDA backend's hidden_backward takes the per-user sums, by the switches it reads. */
function hiddenSumsExpected(backwardExpected: boolean): boolean {
  const off = (name: string) => process.env[name] === '0';
  return backwardExpected && !['NCF_CUDA_HIDDEN_SUMS', 'NCF_CUDA_SUMS_BY_USER', 'NCF_CUDA_ITEM_SORT', 'NCF_CUDA_GROUPED'].some(off);
}

interface PartsCase {
  widths: readonly number[]; rows: number; shape: string; training: boolean; fp16: boolean; precision: GemmPrecision;
  forwardExpected: boolean | undefined;  // whether hidden_forward runs fused (undefined: as its layout has it)
  layers: (DropoutArgs & { w: Float32Array; b: Float32Array; in: number; out: number; mask: boolean })[];
  asStored: (v: Float32Array) => Float32Array; rng: Rng;
}

/**
 * hidden_forward with the first layer's parts (FirstLayerParts) against the CPU's gather_add_relu
 * and chain, and bit for bit against the same op fed gather_add_relu's output. Taking the parts
 * for evaluation, the kernel writes only the last of its layers' outputs (what evaluation reads
 * next); for training, every one, with the first layer's live units.
 */
function partsChecks(dev: NativeOpRunner, cpu: NativeOpRunner, c: PartsCase): Check[] {
  const { widths, rows, training, fp16, rng } = c, L = widths.length;
  // The user side's rows: in runs of 101 (evaluation lists), or of 1 to 12 (a batch grouped by user).
  let user = 0, left = 0;
  const ia = new Uint32Array(rows);
  for (let r = 0; r < rows; ++r) {
    if (left === 0) [user, left] = [(user + 1) % 4, training ? 1 + rng.below(12) : 101];
    ia[r] = user;
    --left;
  }
  const first = training ? { dropout: 0.5, seed: 13, layer: 0, epoch: 2, pos0: 500, mask: true } : { dropout: 0 };
  const parts = {
    a: c.asStored(rng.f32(4 * widths[0], -1, 1)), ia, b: c.asStored(rng.f32(9 * widths[0], -1, 1)),
    ib: Uint32Array.from({ length: rows }, () => rng.below(9)), ...first, training,
  };
  const layers = training ? c.layers : c.layers.map((l) => ({ ...l, dropout: 0, mask: false }));
  const pd = dev.hiddenForward({ parts, layers, fp16 }), pc = cpu.hiddenForward({ parts, layers });
  // The outputs compared: from the parts in evaluation, the kernel writes only its last layer's.
  const written = pd.partsFused && !training ? pd.fusedLayers : 0;
  let err = 0;
  for (let l = written; l < L; ++l) err = Math.max(err, relError(pd.act[l], pc.act[l]));
  const how = pd.partsFused ? 'in the kernel' : 'by gather_add_relu';
  const name = `hidden_forward ${c.shape}, ${training ? 'training' : 'evaluation'}, first layer from its parts`;
  const expected = (c.forwardExpected ?? pd.fusedLayers > 0) && process.env.NCF_CUDA_HIDDEN_PARTS !== '0';
  // The same op from gather_add_relu's output, with its live units.
  const gathered = dev.gatherAddRelu({ ...parts, cols: widths[0], fp16, halfTables: fp16 });
  const gd = dev.hiddenForward({ x: gathered.y, layers, fp16 });
  const same = pd.act.every((a, l) => l < written || exactlyEqual(a, l === 0 ? gathered.y : gd.act[l])) &&
    pd.masks.every((m, l) => (l === 0 ? !training || exactlyEqual(m!, gathered.mask) : m === gd.masks[l] || exactlyEqual(m!, gd.masks[l]!)));
  return [
    check(`${name} (${how})`, c.precision, err, TOLERANCE[c.precision]),
    property(`${name} ${expected ? 'in the kernel' : 'by gather_add_relu'}`, pd.partsFused === expected),
    property(`${name} = from gather_add_relu's output`, same),
  ];
}

export function hiddenLayerChecks(dev: NativeOpRunner, cpu: NativeOpRunner, precision: GemmPrecision, rng: Rng): Check[] {
  const fp16 = precision === 'fp16';
  const tol = TOLERANCE[precision];
  const checks: Check[] = [];
  // fp16 or TF32. The one-buffer form runs where one staging buffer fits more layers or larger
  // tiles than two (ml-20m's layers) and declines elsewhere: which shapes those are is the kernel's
  // layout's business, so its checks say which ran and compare the values (the tests know the shapes).
  const forwardSwitch = process.env.NCF_CUDA_HIDDEN_FORWARD;
  const forwardExpected = precision === 'fp32' ? false : forwardSwitch === 'one-buffer' ? undefined : forwardSwitch === '1';
  const backwardExpected = precision !== 'fp32' && process.env.NCF_CUDA_HIDDEN_BACKWARD === '1'; // fp16 or TF32
  const asStored = (v: Float32Array) => (fp16 ? cpu.halfRoundTrip(v) : v);
  for (const [widths, rows] of SHAPES) {
    const L = widths.length, shape = `${widths.join('-')}, ${rows} rows`;
    const layers = widths.slice(1).map((out, i) => ({
      in: widths[i], out, w: rng.f32(out * widths[i], -0.2, 0.2), b: rng.f32(out, -0.1, 0.1),
      dropout: i + 2 < L ? 0.5 : 0, seed: 11, layer: i + 1, epoch: 1, pos0: 1000, mask: i + 2 < L,
    }));
    const x = asStored(rng.f32(rows * widths[0]).map((v) => Math.max(v, 0)));
    const fd = dev.hiddenForward({ x, layers, fp16 }), fc = cpu.hiddenForward({ x, layers });
    let err = 0;
    for (let l = 1; l < L; ++l) err = Math.max(err, relError(fd.act[l], fc.act[l]));
    // (The fused kernel takes the leading layers whose weights fit in shared memory: in TF32 at
    // ml-20m's layers, the first alone, or both with the one-buffer form.)
    const how = fd.fusedLayers ? `fused kernel for ${fd.fusedLayers} of ${L - 1} layers` : 'op chain';
    checks.push(check(`hidden_forward ${shape} (${how})`, precision, err, tol));
    if (forwardExpected !== undefined)
      checks.push(property(`hidden_forward ${shape} ran ${forwardExpected ? 'fused' : 'as the op chain'}`, fd.fusedLayers > 0 === forwardExpected));
    checks.push(property(`hidden_forward ${shape}: live units = (y > 0)`, fd.masks.every((m, l) => !m || exactlyEqual(m, liveBits(fd.act[l], rows, widths[l])))));

    // The first layer from its two parts, inside the kernel where it takes them: as evaluation
    // runs it (no dropout; the user side's rows in runs of 101, an evaluation list's) and as
    // training does (the first layer's dropout and live units; runs of 1 to 12 rows).
    for (const training of [false, true])
      checks.push(...partsChecks(dev, cpu, { widths, rows, shape, layers, training, fp16, precision, forwardExpected, asStored, rng }));

    const below = widths.slice(0, -1).map((cols, layer) => {
      const y = asStored(rng.f32(rows * cols).map((v) => Math.max(v, 0)));
      return { y, dropout: 0.5, seed: 9, layer, mask: liveBits(y, rows, cols) };
    });
    const dz = asStored(rng.f32(rows * widths[L - 1]));
    const { users, nUsers } = usersInRuns(rows, rng);
    const hd = dev.hiddenBackward({ dz, layers, below, fp16, users, nUsers }), hc = cpu.hiddenBackward({ dz, layers, below, users, nUsers });
    err = 0;
    for (let l = 0; l < L - 1; ++l) err = Math.max(err, relError(hd.dz[l], hc.dz[l]), relError(hd.gradB[l], hc.gradB[l]));
    checks.push(check(`hidden_backward ${shape} (${hd.fused ? 'fused kernel' : 'op chain'})`, precision, err, tol));
    checks.push(property(`hidden_backward ${shape} ran ${backwardExpected ? 'fused' : 'as the op chain'}`, hd.fused === backwardExpected));
    const sumsHow = hd.userSumsFused ? 'in the kernel' : 'by pair_row_sums';
    checks.push(check(`hidden_backward ${shape}: per-user sums (${sumsHow})`, precision, relError(hd.userSums!, hc.userSums!), tol));
    const sumsExpected = hiddenSumsExpected(backwardExpected);
    checks.push(property(`hidden_backward ${shape}: per-user sums ${sumsExpected ? 'in the kernel' : 'by pair_row_sums'}`, hd.userSumsFused === sumsExpected));
  }
  return checks;
}
