// Drives the instructor dashboard page in headless Chromium (Debian's chromium,
// playwright-core from lms/assets/node_modules), for tests/test_dashboard_page.py.
//
//   node dashboard_page.js <page url> <email> <password> <enrollment id>
//
// Signs in through the page's form, waits for the enrollment's row and the
// live connection, prints {"live": true, "progress": ...}, then reads commands
// from stdin (JSON lines):
//   {"expect_progress": "50%"} -> waits (15 s) until the row shows it without
//                                 a reload; prints {progress, activity, reloaded}
//   {"close": true}           -> prints {"errors": [...]} and exits
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const [url, email, password, enrollmentId] = process.argv.slice(2);
const errors = [];

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  const page = await browser.newPage();
  page.on("console", (msg) => {
    // A failed request is reported by the response handler, with its URL.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) errors.push(msg.text());
  });
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("response", (r) => { if (r.status() >= 400) errors.push(r.status() + " " + r.url()); });

  await page.goto(url);
  await page.fill("#signin input[name=email]", email);
  await page.fill("#signin input[name=password]", password);
  await page.click("#signin button[type=submit]");
  const row = page.locator(`tr[data-enrollment-id="${enrollmentId}"]`);
  await row.waitFor({ timeout: 15000 });
  await page.waitForFunction(
    () => document.querySelector("#connection").className === "status-live" &&
      document.querySelector("#online").textContent !== "–",
    null, { timeout: 15000 },
  );
  // A reload would lose this marker.
  await page.evaluate(() => { window.__notReloaded = true; });
  out({
    live: true,
    progress: await row.locator("td.progress").textContent(),
    student: await row.locator("td.student").textContent(),
    online: await page.locator("#online").textContent(),
  });

  const commands = readline.createInterface({ input: process.stdin });
  for await (const line of commands) {
    const command = JSON.parse(line);
    if (command.close) break;
    if (command.expect_progress) {
      await page.waitForFunction(
        ([id, text]) => {
          const cell = document.querySelector(`tr[data-enrollment-id="${id}"] td.progress`);
          return cell && cell.textContent === text;
        },
        [enrollmentId, command.expect_progress], { timeout: 15000 },
      );
      out({
        progress: await row.locator("td.progress").textContent(),
        activity: await page.locator("#activity li").first().textContent(),
        reloaded: !(await page.evaluate(() => window.__notReloaded === true)),
      });
    }
  }
  out({ errors });
  await browser.close();
}

main().catch((err) => {
  out({ failed: String(err && err.stack || err), errors });
  process.exit(1);
});
