import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadTokenizer, gpt2TokenizerFiles, tokenizerJsonFromVocabMerges, RestrictedVocab, restrictTokenizer } from '../src/lib/model/tokenizer';
import { byteTokenizerFiles } from './helpers/gpt2-fixture';

// gpt-3-encoder's own encoder (a separate implementation of GPT-2's encoder.py over the same files)
// eslint-disable-next-line @typescript-eslint/no-var-requires
const reference = require('gpt-3-encoder') as { encode: (s: string) => number[]; decode: (ids: number[]) => string };

const TRICKY = [
  'Hello world',
  'Hello, world!',
  ' leading space',
  'trailing space ',
  'two  spaces   three',
  "It's John's dog; they're here, we'll see, I'd go, you've been, I'm fine.",
  "'s 's s'",
  'Numbers: 0 1 12 123 1234 12345 3.14159 1,000,000 2023-11-25',
  'Punctuation!?... (a) [b] {c} <d> "e" — – … ¿¡',
  'naïve café résumé Zürich',
  '日本語のテキスト 中文 한국어',
  'emoji 🙂🚀👍🏽 and ZWJ 👨‍👩‍👧',
  'line one\nline two\n\nafter blank\r\nwindows\ttab',
  '   ',
  'A man riding a wave on top of a surfboard.',
  'a\u00a0non-breaking space and a zero\u200bwidth',
];

test('GPT-2 tokenizer: well-known ids', async () => {
  const tok = await loadTokenizer();
  assert.deepEqual(tok.encode('Hello world'), [15496, 995]);
  assert.deepEqual(tok.encode('Hello, world!'), [15496, 11, 995, 0]);
  assert.deepEqual(tok.encode(' the'), [262]);
  assert.deepEqual(tok.encode('.'), [13]);
  assert.deepEqual(tok.encode('\n'), [198]);
  assert.equal(tok.eosId, 50256);
  assert.equal(tok.vocabSize, 50257);
  assert.deepEqual(tok.encode('<|endoftext|>'), [50256]);
  assert.equal(tok.decode([15496, 995, 50256]), 'Hello world<|endoftext|>');
});

test('GPT-2 tokenizer equals gpt-3-encoder on tricky strings, and decode inverts encode', async () => {
  const tok = await loadTokenizer();
  for (const s of TRICKY) {
    const ids = tok.encode(s);
    assert.deepEqual(ids, reference.encode(s), JSON.stringify(s));
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    assert.equal(reference.decode(ids), s);
  }
  // no clean-up of spaces before punctuation
  assert.equal(tok.decode(tok.encode('a , b . c')), 'a , b . c');
});

test('tokenizer from a model directory: vocab.json + merges.txt, or tokenizer.json; clear error without', async () => {
  const gpt = await loadTokenizer();
  const files = gpt2TokenizerFiles();
  const d1 = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-tok-'));
  fs.writeFileSync(path.join(d1, 'vocab.json'), files['vocab.json']);
  fs.writeFileSync(path.join(d1, 'merges.txt'), files['merges.txt']);
  const d2 = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-tok-'));
  fs.writeFileSync(path.join(d2, 'tokenizer.json'), JSON.stringify(tokenizerJsonFromVocabMerges(JSON.parse(files['vocab.json']), files['merges.txt'])));
  for (const dir of [d1, d2]) {
    const tok = await loadTokenizer(dir);
    for (const s of TRICKY.slice(0, 8)) assert.deepEqual(tok.encode(s), gpt.encode(s));
    assert.equal(tok.eosId, 50256);
    assert.ok(Object.keys(tok.files!()).length > 0);
  }
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-tok-'));
  await assert.rejects(loadTokenizer(empty), /has no tokenizer: it needs tokenizer\.json, or vocab\.json and merges\.txt/);
});

test('tiny byte-level tokenizer of the test fixtures', async () => {
  const f = byteTokenizerFiles();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clipcap-tok-'));
  fs.writeFileSync(path.join(dir, 'vocab.json'), f.vocabJson);
  fs.writeFileSync(path.join(dir, 'merges.txt'), f.mergesTxt);
  const tok = await loadTokenizer(dir);
  assert.equal(tok.vocabSize, 262);
  assert.equal(tok.eosId, 261);
  // merges: Ġt=256, he=257, Ġthe=258, Ġa=259, in=260; bytes map to their own value
  assert.deepEqual(tok.encode('the'), [116, 257]);
  assert.deepEqual(tok.encode(' the cat'), [258, 32, 99, 97, 116]); // 'Ġ' is byte 32
  assert.deepEqual(tok.encode(' a tin'), [259, 256, 260]);
  assert.equal(tok.decode(tok.encode('in a tin, the end')), 'in a tin, the end');
});

test('RestrictedVocab: compact ids, JSON round trip, and the unknown-token policy', async () => {
  const tok = await loadTokenizer();
  const corpus = ['A man riding a horse.', 'Two dogs play in the snow.'].map((s) => tok.encode(s));
  const vocab = RestrictedVocab.fromCorpus(corpus, [tok.eosId]);
  const uniq = new Set([...corpus.flat(), tok.eosId]);
  assert.equal(vocab.size, uniq.size);
  const ids = corpus[0];
  const compact = vocab.toCompact(ids);
  assert.ok(compact.every((c) => c >= 0 && c < vocab.size));
  assert.deepEqual(vocab.toFull(compact), ids);
  // ascending full ids -> compact ids preserve order
  const sorted = [...uniq].sort((a, b) => a - b);
  assert.deepEqual(vocab.toFull(sorted.map((_, i) => i)), sorted);
  const back = RestrictedVocab.fromJSON(JSON.parse(JSON.stringify(vocab.toJSON())));
  assert.deepEqual(back.toCompact(ids), compact);
  assert.throws(() => vocab.toCompact([tok.encode(' zebra')[0]]), /not in the restricted vocabulary/);
  assert.throws(() => vocab.toFull([vocab.size]), /outside the restricted vocabulary/);
  assert.throws(() => RestrictedVocab.fromJSON({ format: 'x' }), /not a clipcap vocabulary map/);
  assert.throws(() => RestrictedVocab.fromJSON({ format: 'clipcap-vocab-map', version: 1, full_ids: [3, 2] }), /ascending/);

  const rt = restrictTokenizer(tok, vocab);
  assert.equal(rt.vocabSize, vocab.size);
  assert.equal(rt.eosId, vocab.toCompact([50256])[0]);
  assert.equal(rt.decode(rt.encode('A man riding a horse.')), 'A man riding a horse.');
  // unknown tokens are dropped and counted
  const e = rt.encode('A zebra riding a horse.');
  const zebra = tok.encode(' zebra');
  assert.ok(zebra.length >= 1 && zebra.every((id) => !vocab.has(id)));
  assert.equal(rt.dropped, zebra.length);
  assert.equal(rt.decode(e), 'A riding a horse.');
  assert.throws(() => restrictTokenizer(tok, RestrictedVocab.fromCorpus(corpus)), /lacks the end-of-text token/);
  assert.ok('vocab_map.json' in rt.files());
});
