// Loading GPT-2 through the hub (a loopback server in the hub URL layout) and the `clipcap lm` command.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ensureBackend } from '../src/lib/tfjs/backend';
import { loadGPT2, loadLanguageModel, saveLanguageModel } from '../src/lib/model/gpt2-hf';
import { GPT2, configFromHF } from '../src/lib/model/gpt2';
import { greedy } from '../src/lib/model/generate';
import { loadTokenizer, gpt2TokenizerFiles, RestrictedVocab, restrictTokenizer } from '../src/lib/model/tokenizer';
import type { HubSettings } from '../src/lib/io/hub';
import { startHubServer } from './helpers/hub-server';
import { TINY_BYTES, writeTinyGPT2, hfConfigJson } from './helpers/gpt2-fixture';

process.env.CLIPCAP_QUIET_BACKEND = '1';
const ROOT = path.resolve(__dirname, '..');

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-gpt2hub-'));
}

type CliJson = { prompt_ids: number[]; ids: number[]; text: string };

/** Run `clipcap lm` (asynchronously: the loopback server lives in this process). */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ json: CliJson; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'clipcap.js'), 'lm', ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      try {
        assert.equal(code, 0, `clipcap lm failed: ${stderr}`);
        const lines = stdout.trim().split('\n');
        assert.equal(lines.length, 1, `one JSON line expected, got: ${stdout}`);
        resolve({ json: JSON.parse(lines[0]) as CliJson, stdout });
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** What the CLI should print, computed in-process. */
async function expected(dir: string, prompt: string, n: number) {
  await ensureBackend({ quiet: true });
  const { model, tokenizer } = await loadLanguageModel(dir);
  const promptIds = tokenizer.encode(prompt);
  const prefix = model.embedTokens(tf.tensor2d([promptIds], undefined, 'int32'));
  const ids = greedy(model, prefix, { maxNewTokens: n, eosId: tokenizer.eosId })[0];
  prefix.dispose();
  model.dispose();
  return { prompt_ids: promptIds, ids, text: tokenizer.decode(ids) };
}

test('clipcap lm on a local model directory prints one JSON line', async () => {
  const dir = tmp();
  writeTinyGPT2(dir, TINY_BYTES, { tokenizer: true, seed: 3, scale: 0.5 });
  const want = await expected(dir, 'the cat', 6);
  assert.deepEqual(want.prompt_ids, [116, 257, 32, 99, 97, 116]);
  const { json } = await cli(['--model', dir, '--prompt', 'the cat', '--max-new-tokens', '6', '--greedy', '--json']);
  assert.deepEqual(json, want);
  assert.ok(json.ids.length > 0 && json.ids.length <= 6);
});

test('loadGPT2 and clipcap lm through the loopback hub; a second run works with the server stopped', async () => {
  const root = tmp();
  const repo = path.join(root, 'acme', 'tiny-gpt2');
  // HF layout as on the hub: transformer. prefix, attention buffers
  writeTinyGPT2(repo, TINY_BYTES, { tokenizer: true, seed: 4, scale: 0.5, prefix: true, buffers: true });
  const cache = tmp();
  const server = await startHubServer(root);
  const settings: HubSettings = { remoteHost: server.url, cacheDir: path.join(cache, 'hub'), offline: false };
  const want = await expected(repo, 'in the', 5);
  await ensureBackend({ quiet: true });
  try {
    const m = await loadGPT2('acme/tiny-gpt2', { settings });
    assert.equal(m.config.vocabSize, TINY_BYTES.vocabSize);
    const local = await loadGPT2(repo);
    for (const [name, v] of local.namedWeights()) assert.deepEqual(m.namedWeights().get(name)!.dataSync(), v.dataSync(), name);
    m.dispose();
    local.dispose();
    assert.ok(server.requests.includes('/acme/tiny-gpt2/resolve/main/model.safetensors'));

    const env = { CLIPCAP_HUB_URL: server.url, CLIPCAP_CACHE: cache };
    const { json } = await cli(['--model', 'acme/tiny-gpt2', '--prompt', 'in the', '--max-new-tokens', '5', '--greedy', '--json'], env);
    assert.deepEqual(json, want);
    assert.ok(fs.existsSync(path.join(cache, 'hub', 'acme', 'tiny-gpt2', 'model.safetensors')));
  } finally {
    await server.close();
  }
  const n = server.requests.length;
  const again = await loadGPT2('acme/tiny-gpt2', { settings });
  again.dispose();
  const { json } = await cli(['--model', 'acme/tiny-gpt2', '--prompt', 'in the', '--max-new-tokens', '5', '--json'], { CLIPCAP_HUB_URL: server.url, CLIPCAP_CACHE: cache });
  assert.deepEqual(json, want);
  assert.equal(server.requests.length, n);
  // a hub id that was never fetched: a clear error naming it
  await assert.rejects(loadGPT2('acme/other', { settings }), /acme\/other/);
});

test('a model with a restricted vocabulary (vocab_map.json) round-trips through saveLanguageModel / loadLanguageModel', async () => {
  await ensureBackend({ quiet: true });
  const gpt = await loadTokenizer();
  const corpus = ['A dog runs on the beach.', 'A cat sleeps on a bed.'].map((s) => gpt.encode(s));
  const vocab = RestrictedVocab.fromCorpus(corpus, [gpt.eosId]);
  const tokenizer = restrictTokenizer(gpt, vocab);
  const model = new GPT2(configFromHF(hfConfigJson({ ...TINY_BYTES, vocabSize: vocab.size })), undefined, { seed: 2 });
  const dir = path.join(tmp(), 'lm');
  await saveLanguageModel({ model, tokenizer }, dir);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', 'merges.txt', 'model.safetensors', 'vocab.json', 'vocab_map.json']);
  assert.equal(fs.readFileSync(path.join(dir, 'merges.txt'), 'utf8'), gpt2TokenizerFiles()['merges.txt']);
  const lm = await loadLanguageModel(dir);
  assert.equal(lm.tokenizer.vocabSize, vocab.size);
  assert.deepEqual(lm.tokenizer.encode('A cat runs on the bed.'), tokenizer.encode('A cat runs on the bed.'));
  assert.equal(lm.tokenizer.eosId, tokenizer.eosId);
  const prefix = lm.model.embedTokens(tf.tensor2d([lm.tokenizer.encode('A dog')], undefined, 'int32'));
  const ids = greedy(lm.model, prefix, { maxNewTokens: 4, eosId: lm.tokenizer.eosId })[0];
  assert.ok(ids.every((id) => id >= 0 && id < vocab.size));
  assert.equal(typeof lm.tokenizer.decode(ids), 'string');
  prefix.dispose();
  lm.model.dispose();
  // a map that does not fit the weights is an error
  fs.writeFileSync(path.join(dir, 'vocab_map.json'), JSON.stringify(RestrictedVocab.fromCorpus([corpus[0]], [gpt.eosId]).toJSON()));
  await assert.rejects(loadLanguageModel(dir), /vocab_map\.json does not match the weights/);
  model.dispose();
});

test('clipcap lm validates its flags as caption does (before loading any model)', () => {
  const { spawnSync } = require('child_process') as typeof import('child_process');
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin', 'clipcap.js'), 'lm', '--model', '/nonexistent-model', '--prompt', 'a', ...args], { cwd: ROOT, encoding: 'utf8' });
  for (const [args, re] of [
    [['--beam', '2.5'], /--beam must be a whole number from 1 to 64, got 2\.5/],
    [['--beam', '0'], /--beam must be a whole number/],
    [['--top-p', '1.5'], /--top-p must be in \(0, 1\], got 1\.5/],
    [['--top-p', '0.9', '--temperature', '0'], /--temperature must be a positive number/],
    [['--seed', '3'], /--seed and --temperature apply to --top-p sampling only/],
  ] as [string[], RegExp][]) {
    const r = run(...args);
    assert.notEqual(r.status, 0, args.join(' '));
    assert.match(r.stderr, re, args.join(' '));
  }
});
