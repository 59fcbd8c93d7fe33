// The live pages in headless Chromium: a host and two players (one per instance) play a
// two-question game to the end.
//
//   node tests/js/live_pages.js <url A> <url B> <session id> <pin> <host email> <host password>
//
// Prints one JSON object with what the pages showed; exits non-zero on failure.
"use strict";
const { chromium } = require("playwright-core"); // from lms/assets/node_modules, through NODE_PATH (tests/node.py)

const [urlA, urlB, sessionId, pin, email, password] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"];
const TIMEOUT = 30000;

const visible = (page, screen) => page.waitForSelector(`#screen-${screen}:not([hidden])`, { timeout: TIMEOUT });
const text = (page, selector) => page.textContent(selector);

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: FLAGS,
  });
  const errors = [];
  try {
    const hostContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const host = await hostContext.newPage();
    host.on("pageerror", (e) => errors.push("host: " + e.message));
    await host.goto(`${urlA}/host/${sessionId}`);
    await host.fill("#email", email);
    await host.fill("#password", password);
    await host.click("#signin-button");
    await visible(host, "lobby");
    await host.waitForFunction((p) => document.querySelector("#pin").textContent === p, pin, { timeout: TIMEOUT });

    const players = [];
    for (const [url, nickname] of [[urlA, "Ann"], [urlB, "Ben"]]) {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      const page = await context.newPage();
      page.on("pageerror", (e) => errors.push(nickname + ": " + e.message));
      await page.goto(`${url}/play?pin=${pin}`);
      await page.fill("#nickname", nickname);
      await page.click("#join-button");
      await visible(page, "lobby");
      players.push({ nickname, page });
    }
    await host.waitForFunction(() => document.querySelectorAll("#players li").length === 2, null, { timeout: TIMEOUT });
    const lobbyNames = await host.$$eval("#players li", (items) => items.map((li) => li.firstChild.textContent));
    await host.click("#start");

    const [ann, ben] = players.map((p) => p.page);
    const report = { lobbyNames, questions: [] };
    // Question 1, single choice ("b" is correct): Ann right, Ben wrong.
    await Promise.all([visible(ann, "question"), visible(ben, "question"), visible(host, "question")]);
    const countdown = Number(await text(host, "#countdown"));
    await ann.click("#options button[data-id='b']");
    await ben.click("#options button[data-id='a']");
    await Promise.all([visible(ann, "result"), visible(ben, "result"), visible(host, "reveal")]);
    report.questions.push({
      countdown,
      hostText: await text(host, "#q-text"),
      correct: await text(host, "#correct"),
      distribution: await host.$$eval("#distribution .count", (els) => els.map((e) => Number(e.textContent))),
      ann: { result: await text(ann, "#result-text"), points: Number(await text(ann, "#points")) },
      ben: { result: await text(ben, "#result-text"), points: Number(await text(ben, "#points")) },
    });
    await host.click("#next");
    await visible(host, "leaderboard");
    await Promise.all([visible(ann, "leaderboard"), visible(ben, "leaderboard")]);
    report.leaderboard = await host.$$eval("#board li", (items) => items.map((li) => li.textContent));
    await host.click("#next");

    // Question 2, multiple choice (a, b and d): Ann picks all three, Ben only c.
    await Promise.all([visible(ann, "question"), visible(ben, "question")]);
    for (const id of ["a", "b", "d"]) await ann.click(`#options button[data-id='${id}']`);
    await ann.click("#submit");
    await ben.click("#options button[data-id='c']");
    await ben.click("#submit");
    await Promise.all([visible(ann, "result"), visible(ben, "result"), visible(host, "reveal")]);
    report.questions.push({
      correct: await text(host, "#correct"),
      ann: { result: await text(ann, "#result-text"), total: Number(await text(ann, "#total")) },
      ben: { result: await text(ben, "#result-text"), total: Number(await text(ben, "#total")) },
    });
    await host.click("#next");
    await visible(host, "leaderboard");
    await host.click("#next");
    await Promise.all([visible(ann, "ended"), visible(ben, "ended"), visible(host, "ended")]);
    await ann.waitForFunction(() => document.querySelector("#final-rank").textContent !== "–", null, { timeout: TIMEOUT });
    report.final = {
      host: await host.$$eval("#final-board li", (items) => items.map((li) => li.textContent)),
      ann: { rank: await text(ann, "#final-rank"), score: Number(await text(ann, "#final-score")) },
      ben: { rank: await text(ben, "#final-rank"), score: Number(await text(ben, "#final-score")) },
    };
    report.errors = errors;
    process.stdout.write(JSON.stringify(report) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + "\n");
  process.exit(1);
});
