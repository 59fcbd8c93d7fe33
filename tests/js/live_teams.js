// A team game in headless Chromium: the host (instance A) runs a session with two teams; two
// players join on instance B, are balanced into one team each, see their team, answer, and
// both screens show the team leaderboard.
//
//   node tests/js/live_teams.js <url A> <url B> <session id> <pin> <host email> <host password>
//
// Prints one JSON object with what the pages showed; exits non-zero on failure.
"use strict";
const { chromium } = require("playwright-core"); // from lms/assets/node_modules, through NODE_PATH (tests/node.py)

const [urlA, urlB, sessionId, pin, email, password] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"];
const TIMEOUT = 30000;

const visible = (page, screen) => page.waitForSelector(`#screen-${screen}:not([hidden])`, { timeout: TIMEOUT });
const items = (page, selector) => page.$$eval(selector + " li", (lis) => lis.map((li) => li.textContent));

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: FLAGS,
  });
  const errors = [];
  try {
    const host = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    host.on("pageerror", (e) => errors.push("host: " + e.message));
    await host.goto(`${urlA}/host/${sessionId}`);
    await host.fill("#email", email);
    await host.fill("#password", password);
    await host.click("#signin-button");
    await visible(host, "lobby");

    const players = [];
    const teams = [];
    for (const nickname of ["Ada", "Grace"]) {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      const page = await context.newPage();
      page.on("pageerror", (e) => errors.push(nickname + ": " + e.message));
      await page.goto(`${urlB}/play?pin=${pin}`);
      await page.fill("#nickname", nickname);
      await page.click("#join-button");
      await visible(page, "lobby");
      await page.waitForSelector("#me-team:not([hidden])", { timeout: TIMEOUT });
      teams.push(await page.textContent("#me-team"));
      players.push(page);
    }
    await host.waitForFunction(() => document.querySelectorAll("#players li").length === 2, null, { timeout: TIMEOUT });
    await host.click("#start");
    for (const page of players) {
      await visible(page, "question");
      await page.click("#options button[data-id='b']");
    }
    await Promise.all(players.map((page) => visible(page, "result")));
    await host.waitForSelector("#next:not([hidden])", { timeout: TIMEOUT });
    await host.click("#next"); // the question ended (everyone answered): on to the leaderboard
    await visible(host, "leaderboard");
    await Promise.all(players.map((page) => visible(page, "leaderboard")));
    const hostBoard = await items(host, "#team-board");
    const playerBoard = await items(players[0], "#team-board");
    process.stdout.write(JSON.stringify({ teams, hostBoard, playerBoard, errors }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + "\n");
  process.exit(1);
});
