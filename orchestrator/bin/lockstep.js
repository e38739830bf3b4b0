#!/usr/bin/env node
// The lockstep CLI: the built bundle (orchestrator/dist, `npm run build`), or the TypeScript sources through tsx
// when there is no bundle or it is older than the sources (see entry.js).
import { load } from './entry.js';

const { main } = await load('cli');
const code = await main(process.argv);
// Exit now: role processes keep stdin open to notice the launcher going away.
// (stdout and stderr are synchronous on Linux files and pipes, so nothing is lost.)
process.exit(code);
