// Drives an agentbox browser session with a real CDP client, as a user's code would, and
// prints what it saw as one JSON object on stdout. The end-to-end tests run it and check
// the result against the agentbox API.
//
//   node cdp_client.mjs <playwright|puppeteer>
//
// Environment: AGENTBOX_URL, AGENTBOX_KEY (the agent's API key), SESSION_ID, CONNECT_URL
// (the session's ws_url, or for Playwright its HTTP form), PAGE_URL (a page served by the
// test on loopback), DOWNLOAD_NAME (the file the page's download link serves).

import { chromium } from "playwright-core";
import puppeteer from "puppeteer-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const api = env("AGENTBOX_URL");
const key = env("AGENTBOX_KEY");
const sessionId = env("SESSION_ID");
const connectUrl = env("CONNECT_URL");
const pageUrl = env("PAGE_URL");
const downloadName = env("DOWNLOAD_NAME");
const VIEWPORT = { width: 640, height: 360 };

async function call(path) {
  const response = await fetch(`${api}${path}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

// The downloaded file, read back through the API once it is complete.
async function downloadedFile() {
  const path = `/downloads/${downloadName}`;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const listing = await call(`/v1/compute/fs?path=${encodeURIComponent("/downloads")}`);
    if (listing.entries.some((e) => e.name === downloadName)) {
      const response = await fetch(
        `${api}/v1/compute/fs/content?path=${encodeURIComponent(path)}`,
        { headers: { authorization: `Bearer ${key}` } },
      );
      if (response.ok) return { path, content: await response.text() };
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${path} did not appear in the agent's filesystem`);
}

const innerSize = () => [window.innerWidth, window.innerHeight];

// Opens the test page, fills the field, clicks, evaluates, sets the viewport and takes a
// screenshot through the API between two readings of the page's own size.
async function exercise(page, { fill, setViewport }) {
  await page.goto(pageUrl);
  await fill("#name", "agentbox");
  await page.click("#go");
  const text = await page.evaluate(() => document.querySelector("#out").textContent);
  const sum = await page.evaluate(() => window.add(19, 23));
  await setViewport(VIEWPORT);
  const innerBefore = await page.evaluate(innerSize);
  const shot = await call(`/v1/compute/browser/sessions/${sessionId}/screenshot`);
  const innerAfter = await page.evaluate(innerSize);
  return { text, sum, innerBefore, innerAfter, shot };
}

async function withPlaywright() {
  const browser = await chromium.connectOverCDP(connectUrl);
  const context = browser.contexts()[0];
  const page = context.pages()[0] ?? (await context.newPage());
  const seen = await exercise(page, {
    fill: (selector, value) => page.fill(selector, value),
    setViewport: (size) => page.setViewportSize(size),
  });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#dl")]);
  const failure = await download.failure();
  const file = await downloadedFile();
  await browser.close();
  return { ...seen, suggested: download.suggestedFilename(), failure, file };
}

async function withPuppeteer() {
  const browser = await puppeteer.connect({ browserWSEndpoint: connectUrl, defaultViewport: null });
  const pages = await browser.pages();
  const page = pages[0] ?? (await browser.newPage());
  const seen = await exercise(page, {
    // Puppeteer types rather than fills.
    fill: (selector, value) => page.type(selector, value),
    setViewport: (size) => page.setViewport(size),
  });
  await page.click("#dl");
  const file = await downloadedFile();
  await browser.disconnect();
  return { ...seen, suggested: downloadName, failure: null, file };
}

const client = process.argv[2];
const run = { playwright: withPlaywright, puppeteer: withPuppeteer }[client];
if (!run) {
  console.error("usage: node cdp_client.mjs <playwright|puppeteer>");
  process.exit(2);
}
try {
  const result = await run();
  process.stdout.write(JSON.stringify({ client, ...result }) + "\n");
} catch (error) {
  console.error(error?.stack ?? String(error));
  process.exit(1);
}
