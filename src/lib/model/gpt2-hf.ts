// GPT-2 in the Hugging Face layout: weights from and to safetensors (Conv1D weights are stored
// [in, out], as our linear layers use them: no transpose needed, unlike nn.Linear checkpoints),
// config.json, the tokenizer files, from a hub id or a local directory (model/gpt2.ts: the model).
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { buildDirAtomic, writeFileAtomic, writeJsonAtomic } from '../util/files';
import { isLocalModel, resolveModelFile, resolveModelJson, type FetchOptions } from '../io/hub';
import { parseSafetensors, toFloat32 } from '../io/safetensors';
import { assertFiniteWeights, saveSafetensorsFile } from '../io/weights';
import { loadTokenizer, optionalJson, RestrictedVocab, restrictTokenizer, type Tokenizer } from './tokenizer';
import { GPT2, type GPT2Config, configFromHF, configToHF, weightShapes } from './gpt2';


const IGNORED_KEYS = /(^|\.)attn\.(bias|masked_bias)$|^lm_head\.weight$/;

/** Map safetensors keys to our names: drop `transformer.`, skip the attention buffers and the tied head. */
export function weightsFromSafetensors(buf: Uint8Array, config: GPT2Config, source = 'model.safetensors'): Map<string, tf.Tensor> {
  const file = parseSafetensors(buf, source);
  const shapes = weightShapes(config);
  const out = new Map<string, tf.Tensor>();
  const unexpected: string[] = [];
  try {
    for (const [key, entry] of file.tensors) {
      const name = key.startsWith('transformer.') ? key.slice('transformer.'.length) : key;
      if (IGNORED_KEYS.test(name)) continue;
      const shape = shapes.get(name);
      if (!shape) {
        unexpected.push(key);
        continue;
      }
      if (entry.shape.length !== shape.length || entry.shape.some((s, i) => s !== shape[i])) {
        throw new Error(`${source}: tensor ${key} has shape [${entry.shape}], config.json implies [${shape}]`);
      }
      const data = toFloat32(entry);
      assertFiniteWeights(data, source, key);
      out.set(name, tf.tensor(data, shape, 'float32'));
    }
    if (unexpected.length) {
      throw new Error(`${source}: unexpected tensor(s) ${unexpected.slice(0, 8).join(', ')} (does config.json match the weights?)`);
    }
    const missing = [...shapes.keys()].filter((k) => !out.has(k));
    if (missing.length) {
      throw new Error(`${source}: missing tensor(s) ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ` and ${missing.length - 8} more` : ''}`);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

export interface LoadGPT2Options extends FetchOptions {
  /** Start frozen (not trainable). Default false. */
  frozen?: boolean;
}

/** Load `config.json` + `model.safetensors` from a local directory or a hub id. */
export async function loadGPT2(idOrDir: string, opts: LoadGPT2Options = {}): Promise<GPT2> {
  const cfgJson = await resolveModelJson(idOrDir, 'config.json', opts);
  const config = configFromHF(cfgJson!, `config.json of ${idOrDir}`);
  const buf = await resolveModelFile(idOrDir, 'model.safetensors', { ...opts, optional: true });
  if (!buf) {
    throw new Error(
      `model "${idOrDir}" has no model.safetensors (only safetensors weights are read; convert a pytorch_model.bin with ` +
        '`transformers` save_pretrained(safe_serialization=True))',
    );
  }
  const weights = weightsFromSafetensors(buf, config, isLocalModel(idOrDir) ? path.join(idOrDir, 'model.safetensors') : `model.safetensors of ${idOrDir}`);
  try {
    const model = new GPT2(config, weights);
    if (opts.frozen) model.setTrainable(false);
    return model;
  } finally {
    for (const t of weights.values()) t.dispose();
  }
}

/** Write `model.safetensors` of a model to a file atomically. */
export function writeGPT2Safetensors(model: GPT2, file: string): void {
  saveSafetensorsFile(file, model.namedWeights(), { format: 'pt' });
}

/**
 * Save in the Hugging Face layout (config.json, model.safetensors, and `extraFiles` such as
 * tokenizer files), atomically: the directory is built beside `dir` and then replaces it whole.
 */
export async function saveGPT2(model: GPT2, dir: string, extraFiles: Record<string, string | Uint8Array> = {}): Promise<void> {
  await buildDirAtomic(dir, (tmp) => {
    writeGPT2Safetensors(model, path.join(tmp, 'model.safetensors'));
    writeJsonAtomic(path.join(tmp, 'config.json'), configToHF(model.config));
    for (const [name, data] of Object.entries(extraFiles)) writeFileAtomic(path.join(tmp, name), data);
  });
}

/** A model with its tokenizer (restricted to the model's vocabulary when the directory has vocab_map.json). */
export interface LanguageModel {
  model: GPT2;
  tokenizer: Tokenizer;
}

/**
 * Load a GPT-2 and its tokenizer from a model directory or hub id. With `vocab_map.json` (a
 * RestrictedVocab) the tokenizer encodes to and decodes from the model's compact ids.
 */
export async function loadLanguageModel(idOrDir: string, opts: LoadGPT2Options = {}): Promise<LanguageModel> {
  const mapJson = await optionalJson(idOrDir, 'vocab_map.json', opts);
  const base = await loadTokenizer(idOrDir, opts);
  const tokenizer = mapJson ? restrictTokenizer(base, RestrictedVocab.fromJSON(mapJson, `vocab_map.json of ${idOrDir}`)) : base;
  const model = await loadGPT2(idOrDir, opts);
  const V = model.config.vocabSize;
  if (mapJson ? tokenizer.vocabSize !== V : tokenizer.vocabSize > V) {
    model.dispose();
    throw new Error(
      `model "${idOrDir}": the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${V}` +
        (mapJson ? ' (vocab_map.json does not match the weights)' : ''),
    );
  }
  return { model, tokenizer };
}

/** Save a model with its tokenizer files (and vocab_map.json for a restricted vocabulary). */
export async function saveLanguageModel(lm: LanguageModel, dir: string, extraFiles: Record<string, string | Uint8Array> = {}): Promise<void> {
  const files = lm.tokenizer.files?.();
  if (!files) throw new Error('this tokenizer cannot be saved (it has no files())');
  await saveGPT2(lm.model, dir, { ...files, ...extraFiles });
}
