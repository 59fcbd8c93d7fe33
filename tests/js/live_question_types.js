// The live pages in headless Chromium with a slider and an ordering question: a host and two
// players (one per instance) play both to the end.
//
//   node tests/js/live_question_types.js <url A> <url B> <session id> <pin> <host email> <host password> <order>
//
// <order> is the ordering question's item ids in the correct order, comma-separated.
// Prints one JSON object with what the pages showed; exits non-zero on failure.
"use strict";
const { chromium } = require("playwright-core"); // from lms/assets/node_modules, through NODE_PATH (tests/node.py)

const [urlA, urlB, sessionId, pin, email, password, orderArg] = process.argv.slice(2);
const ORDER = orderArg.split(",");
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"];
const TIMEOUT = 30000;

const visible = (page, screen) => page.waitForSelector(`#screen-${screen}:not([hidden])`, { timeout: TIMEOUT });
const text = (page, selector) => page.textContent(selector);
const shownOrder = (page) => page.$$eval("#ordering li", (items) => items.map((li) => li.dataset.id));

async function slide(page, value) {
  await page.$eval("#slider-input", (input, v) => {
    input.value = v;
    input.dispatchEvent(new Event("input"));
  }, String(value));
}

// Arrange the items into `wanted` with the page's own up buttons.
async function arrange(page, wanted) {
  for (let i = 0; i < wanted.length; i++) {
    let at = (await shownOrder(page)).indexOf(wanted[i]);
    while (at > i) {
      await page.click(`#ordering li[data-id='${wanted[i]}'] button.up`);
      at -= 1;
    }
  }
}

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

    const players = [];
    for (const [url, nickname] of [[urlA, "Ann"], [urlB, "Ben"]]) {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      const page = await context.newPage();
      page.on("pageerror", (e) => errors.push(nickname + ": " + e.message));
      await page.goto(`${url}/play?pin=${pin}`);
      await page.fill("#nickname", nickname);
      await page.click("#join-button");
      await visible(page, "lobby");
      players.push(page);
    }
    await host.waitForFunction(() => document.querySelectorAll("#players li").length === 2, null, { timeout: TIMEOUT });
    await host.click("#start");
    const [ann, ben] = players;
    const report = {};

    // The slider (0-100, answer 88, full points within 2, none from 12 off): Ann 88, Ben 93.
    await Promise.all([visible(ann, "question"), visible(ben, "question"), visible(host, "question")]);
    report.sliderShown = {
      hidden: await ann.$eval("#slider", (el) => el.hidden),
      min: await ann.$eval("#slider-input", (el) => el.min),
      max: await ann.$eval("#slider-input", (el) => el.max),
      options: await ann.$$eval("#options button", (els) => els.length),
    };
    await slide(ann, 88);
    report.sliderValue = await text(ann, "#slider-value");
    await ann.click("#submit");
    await slide(ben, 93);
    await ben.click("#submit");
    await Promise.all([visible(ann, "result"), visible(ben, "result"), visible(host, "reveal")]);
    report.slider = {
      correct: await text(host, "#correct"),
      distribution: await host.$$eval("#distribution .line", (els) => els.map((e) => e.textContent)),
      ann: { result: await text(ann, "#result-text"), points: Number(await text(ann, "#points")) },
      ben: { result: await text(ben, "#result-text"), points: Number(await text(ben, "#points")) },
    };
    await host.click("#next");
    await visible(host, "leaderboard");
    await host.click("#next");

    // The ordering question (partial credit): Ann puts all four right, Ben swaps the last two.
    await Promise.all([visible(ann, "question"), visible(ben, "question")]);
    report.orderingShown = { ann: await shownOrder(ann), ben: await shownOrder(ben) };
    await arrange(ann, ORDER);
    report.annArranged = await shownOrder(ann);
    await ann.click("#submit");
    await arrange(ben, [ORDER[0], ORDER[1], ORDER[3], ORDER[2]]);
    await ben.click("#submit");
    await Promise.all([visible(ann, "result"), visible(ben, "result"), visible(host, "reveal")]);
    report.ordering = {
      correct: await text(host, "#correct"),
      distribution: await host.$$eval("#distribution .count", (els) => els.map((e) => Number(e.textContent))),
      ann: { result: await text(ann, "#result-text"), points: Number(await text(ann, "#points")) },
      ben: { result: await text(ben, "#result-text"), points: Number(await text(ben, "#points")) },
    };
    await host.click("#next");
    await visible(host, "leaderboard");
    await host.click("#next");
    await Promise.all([visible(ann, "ended"), visible(ben, "ended"), visible(host, "ended")]);
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
