#!/usr/bin/env node
// The lockstep CLI. Runs the TypeScript sources directly through tsx.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
const code = await main(process.argv);
// Exit now: role processes keep stdin open to notice the launcher going away.
// (stdout and stderr are synchronous on Linux files and pipes, so nothing is lost.)
process.exit(code);
