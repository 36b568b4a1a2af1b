/**
 * Plain JavaScript (float64) versions of the ops, for the CPU self-test: the native CPU backend
 * is the reference for CUDA, and these small loops are the reference for it. They are written
 * from the definitions, independently of the native code, and run on tiny inputs only.
 */
/** y = x W^T + b for x [n, in], W [out, in]. */
export function affine(x: Float32Array, w: Float32Array, b: Float32Array, n: number, inW: number, out: number): Float64Array {
  const z = new Float64Array(n * out);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < out; o++) {
      let s = b[o];
      for (let k = 0; k < inW; k++) s += x[i * inW + k] * w[o * inW + k];
      z[i * out + o] = s;
    }
  return z;
}

export function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

export function bce(z: number, y: number): number {
  return Math.max(z, 0) - z * y + Math.log1p(Math.exp(-Math.abs(z)));
}
