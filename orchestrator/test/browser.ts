import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium (LOCKSTEP_CHROMIUM overrides), which scripts/ensure-browser.sh installs. */
export const CHROMIUM = process.env.LOCKSTEP_CHROMIUM ?? '/usr/bin/chromium';

/** Chromium through playwright-core, headless, without a sandbox (root in CI) and without background traffic. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}
