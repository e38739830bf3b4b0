// Rewrites the README's wire tables from the wire table (topology/src/wire.ts): `npm run docs:wire`.
import { readFileSync, writeFileSync } from 'node:fs';
import { spliceWireDoc } from '../src/wiredoc.ts';

const readme = new URL('../../README.md', import.meta.url);
const before = readFileSync(readme, 'utf8');
const after = spliceWireDoc(before);
if (after !== before) writeFileSync(readme, after);
console.error(after === before ? 'README.md: wire tables up to date' : 'README.md: wire tables rewritten');
