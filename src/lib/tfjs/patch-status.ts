// What the wasm backend patches changed in this process (wasm-patches.ts, matmul.ts), for the
// backend's one-line report, the training runs' records and the benchmarks.

export interface WasmPatchStatus {
  /** XNNPACK threads of the wasm backend. */
  threads: number;
  /** Who computes large matMuls. */
  matmul: 'openblas' | 'onnxruntime' | 'xnnpack';
  /** Threads of the native engine (OpenBLAS or onnxruntime); 0 without one. */
  ortThreads: number;
  /** The BLAS library and its kernels, when OpenBLAS computes them. */
  blas?: string;
  /** Why OpenBLAS is not used, when it was tried and failed. */
  blasReason?: string;
  /** Why onnxruntime is not used, when it is not. */
  ortReason?: string;
  patched: string[];
}

/** The process's status: written only by installWasmPatches and setMatMulProvider. */
export const status: WasmPatchStatus = { threads: 1, matmul: 'xnnpack', ortThreads: 0, patched: [] };

/** A copy of the status. */
export function wasmPatchStatus(): WasmPatchStatus {
  return { ...status, patched: status.patched.slice() };
}

/** One line for logs: what computes what. */
export function describeWasmPatches(): string {
  const s = wasmPatchStatus();
  const why = s.matmul === 'openblas' ? ` (${s.blas}; ${s.ortThreads} thread(s))` : s.matmul === 'onnxruntime' ? ` (${s.ortThreads} threads${s.blasReason ? `; OpenBLAS not used: ${s.blasReason}` : ''})` : s.ortReason ? ` (onnxruntime not used: ${s.ortReason})` : '';
  return `wasm: ${s.threads} XNNPACK thread(s); matMul: ${s.matmul}${why}`;
}
