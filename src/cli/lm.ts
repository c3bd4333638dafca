// `clipcap lm --model <dir|hub id> --prompt TEXT [--max-new-tokens N] [--greedy | --beam K | --top-p P] [--json]`
//
// Continue a prompt with a GPT-2 model: a local directory in the Hugging Face layout (config.json,
// model.safetensors, tokenizer files, optionally vocab_map.json) or a hub id (downloaded through the
// hub cache; CLIPCAP_HUB_URL / HF_ENDPOINT, CLIPCAP_CACHE, HF_HUB_OFFLINE apply). With --json it
// prints one JSON line {"prompt_ids": [...], "ids": [...], "text": "..."} where ids / text are the
// continuation only.
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from './args';
import { ensureBackend } from '../lib/tfjs/backend';
import { loadLanguageModel } from '../lib/model/gpt2-hf';
import { beamSearch, greedy, topP } from '../lib/model/generate';
import { RestrictedTokenizer, stopIds } from '../lib/model/tokenizer';

const USAGE = `usage: clipcap lm --model <dir|hub id> --prompt TEXT [options]
  --model M            local model directory or hub id (gpt2, distilgpt2, owner/name)
  --prompt TEXT        the text to continue
  --max-new-tokens N   tokens to generate (default 20)
  --greedy             greedy decoding (the default)
  --beam K             beam search with K beams (ClipCap generate_beam; stops at "." or EOS)
  --top-p P            nucleus sampling (with --seed S, default 0, and --temperature T, default 1)
  --revision R         hub revision (default main)
  --json               print one JSON line {"prompt_ids", "ids", "text"} (the continuation)`;

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, {
    values: { model: 'string', prompt: 'string', 'max-new-tokens': 'number', beam: 'number', 'top-p': 'number', seed: 'number', temperature: 'number', revision: 'string' },
    flags: ['greedy', 'json'],
    usage: USAGE,
  });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const modelId = a.values.model as string | undefined;
  const prompt = a.values.prompt as string | undefined;
  if (!modelId || prompt === undefined) {
    console.error(`clipcap lm: --model and --prompt are required\n${USAGE}`);
    return 2;
  }
  const maxNewTokens = (a.values['max-new-tokens'] as number | undefined) ?? 20;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new Error(`--max-new-tokens must be a positive integer, got ${maxNewTokens}`);
  const modes = [a.flags.greedy, a.values.beam !== undefined, a.values['top-p'] !== undefined].filter(Boolean).length;
  if (modes > 1) throw new Error('choose one of --greedy, --beam K, --top-p P');
  const beam = a.values.beam as number | undefined;
  if (beam !== undefined && !(Number.isInteger(beam) && beam >= 1 && beam <= 64)) throw new Error(`--beam must be a whole number from 1 to 64, got ${beam}`);
  const p = a.values['top-p'] as number | undefined;
  if (p !== undefined && !(p > 0 && p <= 1)) throw new Error(`--top-p must be in (0, 1], got ${p}`);
  const temperature = a.values.temperature as number | undefined;
  if (temperature !== undefined && !(temperature > 0 && Number.isFinite(temperature))) throw new Error(`--temperature must be a positive number, got ${temperature}`);
  const seed = a.values.seed as number | undefined;
  if (seed !== undefined && !(Number.isInteger(seed) && seed >= 0)) throw new Error(`--seed must be a whole number >= 0, got ${seed}`);
  if ((seed !== undefined || temperature !== undefined) && p === undefined) throw new Error('--seed and --temperature apply to --top-p sampling only');
  const json = a.flags.json;

  await ensureBackend({ quiet: json });
  const { model, tokenizer } = await loadLanguageModel(modelId, { revision: a.values.revision as string | undefined, progress: !json });
  try {
    const droppedBefore = tokenizer instanceof RestrictedTokenizer ? tokenizer.dropped : 0;
    const promptIds = tokenizer.encode(prompt);
    const dropped = tokenizer instanceof RestrictedTokenizer ? tokenizer.dropped - droppedBefore : 0;
    if (promptIds.length === 0 && dropped > 0) {
      throw new Error(
        `the prompt ${JSON.stringify(prompt)} has no token in this model's restricted vocabulary (${tokenizer.vocabSize} tokens, the words of the captions it was trained on), so there is nothing to continue; use words that occur in captions`,
      );
    }
    if (promptIds.length === 0) throw new Error('the prompt encodes to no tokens; give a non-empty --prompt');
    if (dropped > 0) {
      console.error(
        `clipcap lm: warning: ${dropped} prompt token(s) are not in this model's restricted vocabulary (${tokenizer.vocabSize} tokens) and were dropped; the model continues "${tokenizer.decode(promptIds)}"`,
      );
    }
    if (promptIds.length + maxNewTokens > model.config.nPositions) {
      throw new Error(`prompt (${promptIds.length} tokens) + --max-new-tokens ${maxNewTokens} exceed the model's ${model.config.nPositions} positions`);
    }
    const prefix = tf.tidy(() => model.embedTokens(tf.tensor2d([promptIds], [1, promptIds.length], 'int32')));
    let ids: number[];
    try {
      const base = { maxNewTokens, eosId: tokenizer.eosId };
      if (a.values.beam !== undefined) {
        ids = beamSearch(model, prefix, { ...base, beamSize: beam!, stopIds: stopIds(tokenizer) })[0].ids;
      } else if (a.values['top-p'] !== undefined) {
        ids = topP(model, prefix, { ...base, topP: p!, seed: seed ?? 0, temperature })[0];
      } else {
        ids = greedy(model, prefix, base)[0];
      }
    } finally {
      prefix.dispose();
    }
    const text = tokenizer.decode(ids);
    if (json) process.stdout.write(JSON.stringify({ prompt_ids: promptIds, ids, text }) + '\n');
    else process.stdout.write(prompt + text + '\n');
  } finally {
    model.dispose();
  }
  return 0;
}
