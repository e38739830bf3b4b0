import { z } from 'zod';

/** Where `train --ui` serves the status page when given no address: loopback only, port 7373. */
export const DEFAULT_UI = '127.0.0.1:7373';

/**
 * `--ui [host:port]`: an interface (an IPv4 address or `localhost`) and a port, 0 picking a free one. A bare port
 * means 127.0.0.1.
 */
export const UiAddress = z
  .string()
  .max(300)
  .transform((s, ctx) => {
    const m = /^(?:(localhost|\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})$/.exec(s.trim());
    const port = m ? Number(m[2]) : Number.NaN;
    if (!m || port > 65535 || (m[1] && m[1] !== 'localhost' && m[1].split('.').some((o) => Number(o) > 255))) {
      ctx.addIssue({ code: 'custom', message: 'must be host:port (an IPv4 address or localhost, a port 0-65535; 0 picks a free one)' });
      return z.NEVER;
    }
    return { host: m[1] ?? '127.0.0.1', port };
  });
export type UiAddress = z.infer<typeof UiAddress>;
