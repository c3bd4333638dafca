import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { cleanGenerated, formatCaption } from '../src/lib/model/text';

test('captions from every source are written one way', () => {
  assert.equal(formatCaption('A child in a pink dress is climbing up a set of stairs in an entry way .'), 'A child in a pink dress is climbing up a set of stairs in an entry way.');
  assert.equal(formatCaption('  a family is sitting down at a table to have cake'), 'A family is sitting down at a table to have cake.');
  assert.equal(formatCaption('Four persons sitting on dining table for cake and drinks. '), 'Four persons sitting on dining table for cake and drinks.');
  assert.equal(formatCaption('A dog , a cat and a man \'s hat ...'), "A dog, a cat and a man's hat.");
  assert.equal(formatCaption(' . '), '');
});

test('generated text is cut after its first sentence', () => {
  assert.equal(cleanGenerated(' A man rides a horse. A dog'), 'A man rides a horse.');
  assert.equal(cleanGenerated('A cat<|endoftext|>'), 'A cat');
});
