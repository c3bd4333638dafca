// Matrix products through onnxruntime, on raw float32 views of the wasm heap (used by matmul.ts).
//
// Why: the wasm backend's own BatchMatMul runs XNNPACK (128-bit SIMD, one thread) only without
// transposes and at batch 1, and a scalar loop otherwise, 10-30x slower; the stock matMul gradient
// is made of transposed products (docs/tfjs-wasm-in-node.md, properties 1 and 2). onnxruntime-node,
// installed with transformers.js, runs MLAS's native multi-threaded kernels, and its binding runs a
// session synchronously on caller-owned memory: a one-node Gemm (2-D, optionally with a bias) or
// MatMul (batched, with Transpose nodes) graph, written by onnx-writer.ts and built once per kind,
// reads its inputs from and writes its output into the heap without copies (copies when the heap is
// shared, i.e. with XNNPACK threads). A self-check on a small product decides whether it is used.
import { modelProto, DataType, type NodeInit } from './onnx-writer';
import { ortProfiling, recordOrtProduct } from './ort-profile';

interface OrtSessionLike {
  run(feeds: Record<string, unknown>, fetches: Record<string, unknown>, options: Record<string, unknown>): Record<string, { data: Float32Array }>;
}

export class OrtMatMul {
  private readonly sessions = new Map<string, OrtSessionLike>();
  constructor(
    private readonly binding: { InferenceSession: new () => OrtSessionLike & { loadModel: (...a: unknown[]) => void } },
    readonly threads: number,
  ) {}

  /** key: g (2-D Gemm), c (2-D Gemm with bias) or b (batched MatMul) + transposeA + transposeB */
  private session(kind: 'g' | 'c' | 'b', tA: boolean, tB: boolean): OrtSessionLike {
    const key = `${kind}${+tA}${+tB}`;
    let s = this.sessions.get(key);
    if (s) return s;
    const F = DataType.FLOAT;
    let nodes: NodeInit[];
    let inputs;
    if (kind !== 'b') {
      const ins = kind === 'c' ? ['A', 'B', 'C'] : ['A', 'B'];
      nodes = [{ opType: 'Gemm', inputs: ins, outputs: ['Y'], attrs: { transA: { kind: 'int', v: +tA }, transB: { kind: 'int', v: +tB } } }];
      inputs = [
        { name: 'A', elemType: F, shape: tA ? ['k', 'm'] : ['m', 'k'] },
        { name: 'B', elemType: F, shape: tB ? ['n', 'k'] : ['k', 'n'] },
        ...(kind === 'c' ? [{ name: 'C', elemType: F, shape: ['n'] }] : []),
      ];
    } else {
      nodes = [];
      let a = 'A';
      let bb = 'B';
      if (tA) nodes.push({ opType: 'Transpose', inputs: ['A'], outputs: (a = 'At', ['At']), attrs: { perm: { kind: 'ints', v: [0, 2, 1] } } });
      if (tB) nodes.push({ opType: 'Transpose', inputs: ['B'], outputs: (bb = 'Bt', ['Bt']), attrs: { perm: { kind: 'ints', v: [0, 2, 1] } } });
      nodes.push({ opType: 'MatMul', inputs: [a, bb], outputs: ['Y'] });
      inputs = [
        { name: 'A', elemType: F, shape: tA ? ['ba', 'k', 'm'] : ['ba', 'm', 'k'] },
        { name: 'B', elemType: F, shape: tB ? ['bb', 'n', 'k'] : ['bb', 'k', 'n'] },
      ];
    }
    const model = modelProto({
      opset: 13,
      graph: { name: `matmul_${key}`, nodes, initializers: [], inputs, outputs: [{ name: 'Y', elemType: F, shape: kind === 'b' ? ['b', 'm', 'n'] : ['m', 'n'] }] },
    });
    const bytes = Buffer.concat(model.chunks);
    const sess = new this.binding.InferenceSession();
    sess.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
    this.sessions.set(key, sess);
    return sess;
  }

  /**
   * out = op(a) @ op(b) (+ bias) on raw float32 views; a/b dims are 3-D [batch, rows, cols] as
   * stored. A bias needs batch 1.
   */
  run(a: Float32Array, aDims: number[], b: Float32Array, bDims: number[], tA: boolean, tB: boolean, out: Float32Array, outDims: number[], bias?: Float32Array): void {
    const batched = aDims[0] !== 1 || bDims[0] !== 1;
    if (batched && bias) throw new Error('OrtMatMul: a bias needs batch 1');
    const s = this.session(batched ? 'b' : bias ? 'c' : 'g', tA, tB);
    const ad = batched ? aDims : aDims.slice(1);
    const bd = batched ? bDims : bDims.slice(1);
    const od = batched ? outDims : outDims.slice(1);
    // onnxruntime-node cannot take views of a SharedArrayBuffer (the threaded wasm heap): copy
    const shared = typeof SharedArrayBuffer !== 'undefined' && a.buffer instanceof SharedArrayBuffer;
    const own = (v: Float32Array) => (shared ? v.slice() : v);
    const o = shared ? new Float32Array(out.length) : out;
    const feeds: Record<string, unknown> = { A: { dims: ad, type: 'float32', data: own(a) }, B: { dims: bd, type: 'float32', data: own(b) } };
    if (bias) feeds.C = { dims: [bias.length], type: 'float32', data: own(bias) };
    const profiling = ortProfiling();
    const t0 = profiling ? performance.now() : 0;
    const r = s.run(feeds, { Y: { dims: od, type: 'float32', data: o } }, {});
    if (profiling) {
      const key = `${batched ? 'b' : bias ? 'c' : 'g'}${+tA}${+tB} A[${ad}] B[${bd}]`;
      recordOrtProduct(key, performance.now() - t0, 2 * outDims[0] * outDims[1] * outDims[2] * (tA ? aDims[1] : aDims[2]));
    }
    const y = r.Y.data;
    if (y !== out && (y.buffer !== out.buffer || y.byteOffset !== out.byteOffset)) out.set(y);
  }
}

/** onnxruntime-node's binding with `threads` threads, self-checked; or null and the reason it is not used. */
export function loadOrt(threads: number): { ort: OrtMatMul | null; reason?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { binding } = require('onnxruntime-node/dist/binding');
    const ort = new OrtMatMul(binding, threads);
    // self-check on a small product with transposes
    const a = new Float32Array([1, 2, 3, 4, 5, 6]); // [1, 3, 2] stored, used transposed: [2, 3]
    const b = new Float32Array([1, 0, 0, 1, 1, 1]); // [1, 3, 2]
    const out = new Float32Array(4);
    ort.run(a, [1, 3, 2], b, [1, 3, 2], true, false, out, [1, 2, 2], new Float32Array([10, 20]));
    const want = [1 + 5 + 10, 3 + 5 + 20, 2 + 6 + 10, 4 + 6 + 20];
    if (want.some((v, i) => v !== out[i])) return { ort: null, reason: `self-check failed (${[...out]})` };
    return { ort };
  } catch (e) {
    return { ort: null, reason: (e as Error).message.split('\n')[0] };
  }
}
