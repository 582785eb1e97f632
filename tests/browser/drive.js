// Drives headless Chromium over the DevTools protocol (--remote-debugging-pipe, no extra npm packages) to check
// the axum example's page: MQTT.js in the browser subscribes over WebSocket, a TCP client publishes, the page
// shows the message; and the other way round.
//
//   node drive.js PAGE_URL MQTT_TCP_PORT [SCREENSHOT.png]
//
// Prints one line per check and "N passed, M failed"; exits non-zero on failure. Every wait is bounded.
"use strict";

const { spawn, execFile } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const [pageUrl, tcpPort, screenshot] = process.argv.slice(2);
if (!pageUrl || !tcpPort) {
  console.error("usage: node drive.js PAGE_URL MQTT_TCP_PORT [SCREENSHOT.png]");
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || "chromium";
const nonce = Math.random().toString(16).slice(2, 10);
const results = [];

function record(name, ok, detail) {
  results.push(ok);
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "corvid-chromium-"));
const chrome = spawn(
  CHROMIUM,
  [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    `--user-data-dir=${profile}`,
    "--remote-debugging-pipe",
    "about:blank",
  ],
  // Its own process group, so that the browser and its helper processes end together.
  { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"], detached: true },
);
let chromeExited = false;
chrome.on("exit", () => {
  chromeExited = true;
});
let chromeLog = "";
chrome.stderr.on("data", (d) => {
  chromeLog = (chromeLog + d.toString()).slice(-4000);
});
const toChrome = chrome.stdio[3];
const fromChrome = chrome.stdio[4];
// A browser that failed to start or already exited closes the pipes: the checks report it, not a crash.
toChrome.on("error", () => {});
fromChrome.on("error", () => {});

let nextId = 1;
const pending = new Map();
const events = [];
let inbox = Buffer.alloc(0);
fromChrome.on("data", (chunk) => {
  inbox = Buffer.concat([inbox, chunk]);
  let end;
  while ((end = inbox.indexOf(0)) >= 0) {
    const message = JSON.parse(inbox.subarray(0, end).toString());
    inbox = inbox.subarray(end + 1);
    if (message.id && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(JSON.stringify(message.error)));
      else resolve(message.result);
    } else if (message.method) {
      events.push(message);
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  const message = { id, method, params };
  if (sessionId) message.sessionId = sessionId;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`${method}: no answer within 15 s`));
    }, 15000);
    pending.set(id, {
      resolve: (v) => { clearTimeout(timer); resolve(v); },
      reject: (e) => { clearTimeout(timer); reject(e); },
    });
    toChrome.write(JSON.stringify(message) + "\0");
  });
}

async function evaluate(session, expression) {
  const result = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }, session);
  if (result.exceptionDetails) throw new Error(`${expression}: ${result.exceptionDetails.text}`);
  return result.result.value;
}

// Polls `expression` until `predicate(value)` or `ms` pass; returns the last value.
async function waitFor(session, expression, predicate, ms) {
  const deadline = Date.now() + ms;
  let value;
  while (Date.now() < deadline) {
    try {
      value = await evaluate(session, expression);
      if (predicate(value)) return value;
    } catch (_) {
      // The page is still loading.
    }
    await sleep(200);
  }
  return value;
}

function run(cmd, args, ms) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: ms }, (error, stdout, stderr) => resolve({ error, stdout, stderr }));
  });
}

async function main() {
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  await send("Runtime.enable", {}, sessionId);
  const topic = `browser-test/${nonce}`;
  await send("Page.navigate", { url: `${pageUrl}?topic=${encodeURIComponent(topic + "/#")}` }, sessionId);

  const title = await waitFor(sessionId, "document.title", (t) => typeof t === "string" && t.includes("Corvid"), 15000);
  record("page served by axum loads", typeof title === "string" && title.includes("Corvid"), `title ${JSON.stringify(title)}`);
  const loaded = await waitFor(sessionId, "typeof mqtt === 'object' && typeof mqtt.connect", (v) => v === "function", 10000);
  record("bundled MQTT.js loads from /mqtt.min.js", loaded === "function");

  const status = await waitFor(sessionId, "document.getElementById('status').textContent", (s) => s === "subscribed", 20000);
  record("MQTT.js connects over WebSocket at /mqtt and subscribes", status === "subscribed", `status ${JSON.stringify(status)}`);

  // TCP client to browser.
  const text = `hello browser ${nonce}`;
  const pub = await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", tcpPort, "-q", "1", "-t", `${topic}/tcp`, "-m", text], 15000);
  if (pub.error) record("mosquitto_pub over TCP", false, String(pub.stderr || pub.error));
  const shown = await waitFor(
    sessionId,
    "Array.from(document.querySelectorAll('#messages li')).map((li) => li.textContent)",
    (items) => Array.isArray(items) && items.includes(`${topic}/tcp: ${text}`),
    15000,
  );
  record("message published over TCP is shown in the page", Array.isArray(shown) && shown.includes(`${topic}/tcp: ${text}`), `items ${JSON.stringify(shown)}`);

  // Browser to TCP client.
  const back = `hello tcp ${nonce}`;
  const sub = run("mosquitto_sub", ["-h", "127.0.0.1", "-p", tcpPort, "-q", "1", "-t", `${topic}-back`, "-C", "1", "-W", "15"], 20000);
  await sleep(1000); // let mosquitto_sub subscribe
  await evaluate(sessionId, `client.publish(${JSON.stringify(`${topic}-back`)}, ${JSON.stringify(back)}, { qos: 1 }); true`);
  const got = await sub;
  record("message published by the page reaches a TCP subscriber", got.stdout.trim() === back, `got ${JSON.stringify(got.stdout.trim())} ${got.stderr || ""}`.trim());

  if (screenshot) {
    const { data } = await send("Page.captureScreenshot", { format: "png" }, sessionId);
    fs.writeFileSync(screenshot, Buffer.from(data, "base64"));
  }
}

const overall = setTimeout(() => {
  record("whole run within 90 s", false);
  finish();
}, 90000);

let finishing = false;
async function finish() {
  if (finishing) return;
  finishing = true;
  clearTimeout(overall);
  // Close the browser politely, then make sure its whole process group is gone (bounded waits).
  try {
    await Promise.race([send("Browser.close"), sleep(3000)]);
  } catch (_) {
    // Already closing.
  }
  for (let i = 0; i < 30 && !chromeExited; i++) await sleep(100);
  try {
    process.kill(-chrome.pid, "SIGKILL");
  } catch (_) {
    // Already gone.
  }
  await sleep(200);
  try {
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  } catch (e) {
    console.error(`cannot remove ${profile}: ${e.message}`);
  }
  const passed = results.filter((r) => r).length;
  const failed = results.length - passed;
  if (failed) console.log(`--- chromium log (tail) ---\n${chromeLog}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed || passed === 0 ? 1 : 0);
}

chrome.on("error", (e) => {
  record(`start ${CHROMIUM}`, false, e.message);
  finish();
});

main().then(finish, (e) => {
  record("browser session", false, e.message);
  finish();
});
