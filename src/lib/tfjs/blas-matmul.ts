// Matrix products through a native BLAS (OpenBLAS's cblas_sgemm), on raw float32 views of the wasm
// heap (used by matmul.ts, like ort-matmul.ts).
//
// Why: onnxruntime's MLAS runs the notebooks' product shapes at 40-110 GFLOP/s here; OpenBLAS, with
// its AVX-512 kernels, at 115-140 on one thread (the GEMM that PyTorch uses on these machines). The
// library is called through koffi (an FFI with prebuilt binaries in its npm package, no compiler):
// a heap view is passed as a pointer, so nothing is copied, and transposes are the BLAS's own
// (no explicit transposes, no cached transposes of frozen weights). A self-check on a small product
// decides whether it is used; without the library (macOS or Windows without OpenBLAS, a machine
// without the Debian package libopenblas0) matmul.ts falls back to onnxruntime.
//
// OpenBLAS picks its kernels when it loads. Debian's OpenBLAS 0.3.21 picks the generic SSE3
// ("Prescott") kernels here when OPENBLAS_CORETYPE is unset, and detects the CPU when it is set but
// empty (the way bench/steps.ts starts PyTorch): so an unset variable is set to '' before loading.
// A user's own value is kept.
import { ortProfiling, recordOrtProduct } from './ort-profile';

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

type Sgemm = (order: number, tA: number, tB: number, M: number, N: number, K: number, alpha: number, A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number) => void;

/** Library names tried in order when CLIPCAP_BLAS_LIB is not set. */
export const BLAS_LIBRARIES = ['libopenblas.so.0', 'libopenblas.so', 'libopenblas.0.dylib', 'libopenblas.dylib'];

export class BlasMatMul {
  constructor(
    private readonly sgemm: Sgemm,
    readonly threads: number,
    /** The library file and the kernels it chose (openblas_get_corename), for logs. */
    readonly description: string,
  ) {}

  /**
   * out = op(a) @ op(b) (+ bias) on raw float32 views; a/b dims are 3-D [batch, rows, cols] as
   * stored; a batch of 1 on one side is broadcast. A bias needs batch 1.
   */
  run(a: Float32Array, aDims: number[], b: Float32Array, bDims: number[], tA: boolean, tB: boolean, out: Float32Array, outDims: number[], bias?: Float32Array): void {
    const [batch, M, N] = outDims;
    const K = tA ? aDims[1] : aDims[2];
    if (bias && batch !== 1) throw new Error('BlasMatMul: a bias needs batch 1');
    const profiling = ortProfiling();
    const t0 = profiling ? performance.now() : 0;
    let beta = 0;
    if (bias) {
      for (let r = 0; r < M; r++) out.set(bias, r * N);
      beta = 1;
    }
    const lda = aDims[2];
    const ldb = bDims[2];
    const sa = aDims[0] === 1 ? 0 : M * K;
    const sb = bDims[0] === 1 ? 0 : K * N;
    for (let i = 0; i < batch; i++) {
      const av = batch === 1 ? a : a.subarray(i * sa, i * sa + M * K);
      const bv = batch === 1 ? b : b.subarray(i * sb, i * sb + K * N);
      const ov = batch === 1 ? out : out.subarray(i * M * N, (i + 1) * M * N);
      this.sgemm(ROW_MAJOR, tA ? TRANS : NO_TRANS, tB ? TRANS : NO_TRANS, M, N, K, 1, av, lda, bv, ldb, beta, ov, N);
    }
    if (profiling) {
      const key = `blas ${batch > 1 ? 'b' : bias ? 'c' : 'g'}${+tA}${+tB} A[${aDims}] B[${bDims}]`;
      recordOrtProduct(key, performance.now() - t0, 2 * batch * M * N * K);
    }
  }
}

/**
 * OpenBLAS through koffi with `threads` threads, self-checked; or null and the reason it is not used.
 * `library`: a file name or path (CLIPCAP_BLAS_LIB); default: the names in BLAS_LIBRARIES.
 */
export function loadBlas(threads: number, library?: string): { blas: BlasMatMul | null; reason?: string } {
  let koffi: { load(name: string): { func(sig: string): (...a: unknown[]) => unknown } };
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    koffi = require('koffi');
  } catch (e) {
    return { blas: null, reason: `koffi: ${(e as Error).message.split('\n')[0]}` };
  }
  if (process.env.OPENBLAS_CORETYPE === undefined) process.env.OPENBLAS_CORETYPE = '';
  const names = library ? [library] : BLAS_LIBRARIES;
  const errors: string[] = [];
  for (const name of names) {
    let lib;
    try {
      lib = koffi.load(name);
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    try {
      const sgemm = lib.func(
        'void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, _Inout_ float *C, int ldc)',
      ) as Sgemm;
      let core = 'unknown kernels';
      try {
        (lib.func('void openblas_set_num_threads(int n)') as (n: number) => void)(threads);
        core = (lib.func('const char *openblas_get_corename()') as () => string)();
      } catch {
        // another BLAS: its own threading
      }
      const blas = new BlasMatMul(sgemm, threads, `${name}, ${core} kernels`);
      // self-check on a small product with a transpose and a bias, and on a batched one
      const a = new Float32Array([1, 2, 3, 4, 5, 6]); // [1, 3, 2] stored, used transposed: [2, 3]
      const b = new Float32Array([1, 0, 0, 1, 1, 1]); // [1, 3, 2]
      const out = new Float32Array(4);
      blas.run(a, [1, 3, 2], b, [1, 3, 2], true, false, out, [1, 2, 2], new Float32Array([10, 20]));
      const want = [1 + 5 + 10, 3 + 5 + 20, 2 + 6 + 10, 4 + 6 + 20];
      const out2 = new Float32Array(4);
      blas.run(new Float32Array([1, 2, 3, 4]), [2, 1, 2], new Float32Array([1, 1]), [1, 2, 1], false, false, out2, [2, 1, 1]);
      if (want.some((v, i) => v !== out[i]) || out2[0] !== 3 || out2[1] !== 7) {
        errors.push(`${name}: self-check failed (${[...out]}; ${[...out2.subarray(0, 2)]})`);
        continue;
      }
      return { blas };
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { blas: null, reason: `no BLAS library (${errors.join('; ')})` };
}
