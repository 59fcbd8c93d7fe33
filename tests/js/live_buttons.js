// The "buttons" player view and assigned names in headless Chromium: the host ticks both
// options in the lobby; a player (on the other instance) joins, gets a generated name, and
// sees only coloured answer buttons; the host's screen shows the question.
//
//   node tests/js/live_buttons.js <url A> <url B> <session id> <pin> <host email> <host password>
//
// Prints one JSON object with what the pages showed; exits non-zero on failure.
"use strict";
const { chromium } = require("playwright-core"); // from lms/assets/node_modules, through NODE_PATH (tests/node.py)

const [urlA, urlB, sessionId, pin, email, password] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"];
const TIMEOUT = 30000;

const visible = (page, screen) => page.waitForSelector(`#screen-${screen}:not([hidden])`, { timeout: TIMEOUT });

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: FLAGS,
  });
  const errors = [];
  try {
    const host = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    host.on("pageerror", (e) => errors.push("host: " + e.message));
    // Acks of host commands in the lobby ({"ok":true,"state":"lobby"}), counted from the websocket's frames.
    let lobbyAcks = 0;
    host.on("websocket", (ws) => ws.on("framereceived", (f) => {
      if (/^43\/live,\d+\[\{"ok":true,"state":"lobby"\}\]$/.test(String(f.payload))) lobbyAcks += 1;
    }));
    await host.goto(`${urlA}/host/${sessionId}`);
    await host.fill("#email", email);
    await host.fill("#password", password);
    await host.click("#signin-button");
    await visible(host, "lobby");
    await host.check("#opt-buttons");
    await host.check("#opt-names");
    for (let waited = 0; lobbyAcks < 2; waited += 50) {
      if (waited > TIMEOUT) throw new Error("the host's options were not acknowledged");
      await new Promise((r) => setTimeout(r, 50));
    }

    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const player = await context.newPage();
    player.on("pageerror", (e) => errors.push("player: " + e.message));
    await player.goto(`${urlB}/play?pin=${pin}`);
    await player.fill("#nickname", "Chosen Name");
    await player.click("#join-button");
    await visible(player, "lobby");
    const name = await player.textContent("#me-name");
    await host.waitForFunction(() => document.querySelectorAll("#players li").length === 1, null, { timeout: TIMEOUT });
    const hostListed = await host.$eval("#players li", (li) => li.firstChild.textContent);
    await host.click("#start");

    await Promise.all([visible(player, "question"), visible(host, "question")]);
    const shown = await player.evaluate(() => ({
      cardHidden: document.querySelector("#q-card").hidden,
      text: document.querySelector("#q-text").textContent,
      buttons: Array.from(document.querySelectorAll("#options button")).map((b) => ({
        id: b.dataset.id, text: b.textContent, colour: getComputedStyle(b).backgroundColor,
        height: b.getBoundingClientRect().height,
      })),
      visibleText: document.querySelector("#screen-question").innerText,
    }));
    const hostText = await host.textContent("#q-text");
    const hostOptions = await host.$$eval("#q-options > *", (els) => els.map((e) => e.textContent));
    await player.click("#options button[data-id='b']");
    await visible(player, "result"); // the only player answered: the question ends at once
    const result = await player.textContent("#result-text");
    process.stdout.write(JSON.stringify({ name, hostListed, shown, hostText, hostOptions, result, errors }) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + "\n");
  process.exit(1);
});
