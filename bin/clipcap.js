#!/usr/bin/env node
// The `clipcap` command: runs src/cli.ts through tsx (TypeScript, no build step).
require('tsx/cjs/api').register();
require('../src/cli.ts');
