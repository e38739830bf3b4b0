import { kindsOn, tensorsOn, wireChannels, wireTable, type WireChannel, type WireChannelRow, type WireKind, type WireRow } from './wire.ts';

/** The README's wire tables sit between these markers; `npm run docs:wire` rewrites what is between them. */
export const WIRE_DOC_START = '<!-- wire-table:start -->';
export const WIRE_DOC_END = '<!-- wire-table:end -->';

const cell = (s: string) => s.replace(/\|/g, '\\|');
const code = (s: string) => `\`${s}\``;

/**
 * The wire table as markdown: one row per subject (who may publish on it, and
 * what travels on it), then one per message kind (its contract). A sender
 * written as an actor name over the subject's placeholders (`host/<sp>/<sh>`)
 * is the only one the server lets publish on such a subject.
 */
export function renderWireDoc(): string {
  const channels = (Object.keys(wireChannels) as WireChannel[]).filter((c) => kindsOn(c).length > 0);
  const bySubject = channels.map((c) => {
    const messages = [
      ...kindsOn(c)
        .filter((k) => k !== 'tensor.chunk')
        .map(code),
      ...tensorsOn(c).map((t) => `${code(t)} chunks`),
    ];
    const row: WireChannelRow = wireChannels[c];
    return `| ${code(row.subject)} | ${code(row.sender)} -> ${row.to} | ${messages.join(', ')} |`;
  });
  const byKind = (Object.entries(wireTable) as [WireKind, WireRow][]).map(([kind, row]) => {
    const routes = row.routes.map((r) => `${r.from} -> ${r.to} on ${code(r.on)}`).join('; ');
    const what = row.frame === 'control' ? code(kind) : `${code(kind)} (chunks)`;
    return `| ${what} | ${routes} | ${row.phase === 'none' ? '-' : row.phase} | ${cell(row.contract)} |`;
  });
  return [
    '<!-- generated from topology/src/wire.ts by `npm run docs:wire`; edit the table there -->',
    '',
    '| subject | from -> to | messages |',
    '|---|---|---|',
    ...bySubject,
    '',
    '| message | from -> to on | phase | contract |',
    '|---|---|---|---|',
    ...byKind,
  ].join('\n');
}

/** `doc` with the text between the wire table markers replaced by the rendered table. */
export function spliceWireDoc(doc: string): string {
  const start = doc.indexOf(WIRE_DOC_START);
  const end = doc.indexOf(WIRE_DOC_END);
  if (start < 0 || end < start) throw new Error(`no ${WIRE_DOC_START} ... ${WIRE_DOC_END} section to put the wire table in`);
  return `${doc.slice(0, start + WIRE_DOC_START.length)}\n${renderWireDoc()}\n${doc.slice(end)}`;
}
