// The environment settings (src/lib/settings.ts): defaults, parsed values, and bad values refused with
// the variable named and the values it takes.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as os from 'os';
import * as path from 'path';
import { settings } from '../src/lib/settings';

test('settings: the defaults of an empty environment', () => {
  const s = settings({});
  assert.equal(s.forcedProfile(['paper', 'smoke']), undefined);
  assert.equal(s.confirmPaperOnCpu, false);
  assert.equal(s.dataDir, undefined);
  assert.equal(s.dataset, undefined);
  assert.equal(s.cacheDir, undefined);
  assert.equal(s.hubEndpoint, undefined);
  assert.equal(s.hfToken, undefined);
  assert.equal(s.offline, false);
  assert.equal(s.backend, undefined);
  assert.equal(s.quietBackend, false);
  assert.equal(s.matmul, 'auto');
  assert.equal(s.blasThreads, 1);
  assert.equal(s.blasLibrary, undefined);
  assert.equal(s.ortThreads, os.cpus().length);
  assert.equal(s.wasmThreads, 1);
  assert.equal(s.cacheTransposes, true);
  assert.equal(s.ortProfile, false);
  assert.equal(s.jupyterKernel, false);
});

test('settings: values as set', () => {
  const s = settings({
    CLIPCAP_PROFILE: 'smoke',
    CLIPCAP_CONFIRM_PAPER_ON_CPU: '1',
    CLIPCAP_DATA_DIR: 'mirror',
    CLIPCAP_DATASET: 'my-photos',
    CLIPCAP_CACHE: '/c',
    HF_ENDPOINT: 'http://h/',
    HF_TOKEN: 't',
    TRANSFORMERS_OFFLINE: '1',
    CLIPCAP_BACKEND: 'node',
    CLIPCAP_QUIET_BACKEND: '1',
    CLIPCAP_MATMUL: 'stock',
    CLIPCAP_ORT_THREADS: '3',
    CLIPCAP_WASM_THREADS: '2',
    CLIPCAP_CACHE_TRANSPOSES: '0',
    CLIPCAP_FUSED: '0',
    CLIPCAP_ORT_PROFILE: '1',
  });
  assert.equal(s.forcedProfile(['paper', 'smoke']), 'smoke');
  assert.equal(s.confirmPaperOnCpu, true);
  assert.equal(s.dataDir, path.resolve('mirror'));
  assert.equal(s.dataset, path.resolve('my-photos'));
  assert.equal(s.cacheDir, '/c');
  assert.equal(s.hubEndpoint, 'http://h/');
  assert.equal(settings({ HF_ENDPOINT: 'http://h/', CLIPCAP_HUB_URL: 'http://mine/' }).hubEndpoint, 'http://mine/');
  assert.equal(s.hfToken, 't');
  assert.equal(s.offline, true);
  assert.equal(s.backend, 'tfjs-node');
  assert.equal(s.quietBackend, true);
  assert.equal(s.matmul, 'stock');
  assert.equal(s.ortThreads, 3);
  assert.equal(s.wasmThreads, 2);
  assert.equal(s.cacheTransposes, false);
  assert.equal(s.fusedKernels, false);
  assert.equal(settings({}).fusedKernels, true);
  assert.equal(s.ortProfile, true);
  assert.equal(settings({ CLIPCAP_PROFILE: 'auto' }).forcedProfile(['smoke']), undefined);
});

test('settings: a bad value is refused, naming the variable and the values allowed', () => {
  assert.throws(() => settings({ CLIPCAP_ORT_THREADS: 'two' }).ortThreads, /^Error: CLIPCAP_ORT_THREADS=two must be a positive integer$/);
  assert.throws(() => settings({ CLIPCAP_WASM_THREADS: '0' }).wasmThreads, /^Error: CLIPCAP_WASM_THREADS=0 must be a positive integer$/);
  assert.throws(() => settings({ CLIPCAP_BACKEND: 'tpu' }).backend, /^Error: CLIPCAP_BACKEND=tpu is not a backend; use one of tfjs-node-gpu, tfjs-node, wasm, cpu \(or auto\)$/);
  assert.throws(() => settings({ CLIPCAP_PROFILE: 'nope' }).forcedProfile(['paper', 'smoke']), /^Error: CLIPCAP_PROFILE=nope is not a profile: use one of paper, smoke \(or leave it unset\)$/);
  assert.throws(() => settings({ CLIPCAP_MATMUL: 'onnx' }).matmul, /^Error: CLIPCAP_MATMUL=onnx is not a matMul provider: use one of auto, blas, ort, wasm, stock \(or leave it unset\)$/);
  assert.equal(settings({ CLIPCAP_MATMUL: 'ort' }).matmul, 'ort');
  assert.equal(settings({ CLIPCAP_MATMUL: 'blas' }).matmul, 'blas');
  assert.equal(settings({}).matmul, 'auto');
  assert.throws(() => settings({ CLIPCAP_BLAS_THREADS: '-1' }).blasThreads, /^Error: CLIPCAP_BLAS_THREADS=-1 must be a positive integer$/);
  assert.equal(settings({ CLIPCAP_BLAS_LIB: '/opt/lib/libopenblas.so' }).blasLibrary, '/opt/lib/libopenblas.so');
  // each value is parsed when read: a bad one does not stop the others
  assert.equal(settings({ CLIPCAP_ORT_THREADS: 'two' }).wasmThreads, 1);
});

test('settings: a child process inherits the environment, with defaults for what is unset and overrides', () => {
  const env = settings({ A: 'a', CLIPCAP_ORT_THREADS: '4', UV_THREADPOOL_SIZE: '' }).childEnv({
    set: { CLIPCAP_QUIET_BACKEND: '1' },
    unlessSet: { UV_THREADPOOL_SIZE: '2', CLIPCAP_ORT_THREADS: '1', B: 'b' },
  });
  assert.deepEqual(env, { A: 'a', CLIPCAP_ORT_THREADS: '4', UV_THREADPOOL_SIZE: '', B: 'b', CLIPCAP_QUIET_BACKEND: '1' });
});
