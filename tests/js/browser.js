// A headless Chromium (Debian's chromium, playwright-core from lms/assets/node_modules) that a
// Python test drives step by step (tests/browser.py): one JSON command per stdin line, one
// JSON answer per stdout line.
//
//   {"goto": url}                      -> {"url"}
//   {"fill": selector, "value": text}  -> {}
//   {"click": selector}                -> {}
//   {"visible": selector}              -> {"text"}   waits (15 s) until the element is shown
//   {"text": selector}                 -> {"text"}
//   {"url": true}                      -> {"url"}    the address the page shows now
//   {"evaluate": expression}           -> {"value"}  a JavaScript expression's value (JSON)
//   {"wait_for": expression}           -> {"value"}  waits (15 s) until the expression is truthy
//   {"screenshot": path}               -> {"path"}   a PNG of the whole page
//   {"close": true}                    -> {"errors": [...]} and exits
//
// A failed step answers {"failed": message}. Page errors, console errors and HTTP responses
// >= 500 are collected and reported at close.
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const TIMEOUT = 15000;
const errors = [];

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

async function step(page, command) {
  if (command.goto) {
    await page.goto(command.goto);
    return { url: page.url() };
  }
  if (command.fill) {
    await page.fill(command.fill, command.value, { timeout: TIMEOUT });
    return {};
  }
  if (command.click) {
    await page.click(command.click, { timeout: TIMEOUT });
    return {};
  }
  if (command.visible) {
    const element = page.locator(command.visible);
    await element.waitFor({ state: "visible", timeout: TIMEOUT });
    return { text: (await element.textContent()).trim() };
  }
  if (command.text) {
    return { text: ((await page.locator(command.text).textContent({ timeout: TIMEOUT })) || "").trim() };
  }
  if (command.url) return { url: page.url() };
  if (command.evaluate) return { value: await page.evaluate(command.evaluate) };
  if (command.wait_for) {
    // Polled from here: waitForFunction evaluates strings with eval, which the pages' CSP forbids.
    const deadline = Date.now() + TIMEOUT;
    let value = null;
    while (!(value = await page.evaluate(command.wait_for))) {
      if (Date.now() > deadline) throw new Error("timed out waiting for " + command.wait_for.slice(0, 200));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { value };
  }
  if (command.screenshot) {
    await page.screenshot({ path: command.screenshot, fullPage: true });
    return { path: command.screenshot };
  }
  throw new Error("unknown command " + JSON.stringify(command));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (msg) => {
    // 4xx answers are the pages' business (an expired link is a 400); they are not errors here.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) errors.push(msg.text());
  });
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("response", (r) => { if (r.status() >= 500) errors.push(r.status() + " " + r.url()); });
  out({ ready: true });

  const commands = readline.createInterface({ input: process.stdin });
  for await (const line of commands) {
    const command = JSON.parse(line);
    if (command.close) break;
    try {
      out(await step(page, command));
    } catch (err) {
      out({ failed: String(err && err.message || err) });
    }
  }
  out({ errors });
  await browser.close();
}

main().catch((err) => {
  out({ failed: String(err && err.stack || err), errors });
  process.exit(1);
});
