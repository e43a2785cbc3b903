// Browser tests of the dashboard in headless Chromium. The Rust test tests/e2e/dashboard.rs
// starts the server, submits the runs named below and runs this file with `node --test`.
//
// Environment:
//   CARAML_URL            the server's base URL
//   CARAML_ADMIN_TOKEN    a token with the admin role
//   CARAML_VIEWER_TOKEN   a token with the viewer role
//   CARAML_RUN_LIVE       a run waiting for the signal `go` before ten quick tasks
//   CARAML_RUN_CANCEL     a run waiting for a signal that never comes
//   CARAML_RUN_RETRY      a failed run whose task succeeds on its second attempt
//   CARAML_RUN_INJECT     a finished run whose input, output and error contain HTML
//   CARAML_RUN_WIDE       a run waiting for the signal `go` before 320 sibling tasks
//   CARAML_SCREENSHOTS    paths to save the run page's screenshot to, separated by ':'

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `the environment variable ${name} is not set; run this through tests/e2e/dashboard.rs`);
  return value;
};

const base = env("CARAML_URL");
const adminToken = env("CARAML_ADMIN_TOKEN");
const viewerToken = env("CARAML_VIEWER_TOKEN");
const runs = {
  live: env("CARAML_RUN_LIVE"),
  cancel: env("CARAML_RUN_CANCEL"),
  retry: env("CARAML_RUN_RETRY"),
  inject: env("CARAML_RUN_INJECT"),
  wide: env("CARAML_RUN_WIDE"),
};
const screenshots = (process.env.CARAML_SCREENSHOTS || "").split(":").filter(Boolean);

// Each wait is bounded, so that a broken page fails the test instead of hanging it.
const WAIT_MS = 20_000;

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 950 } });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  return { context, page };
}

async function logIn(page, token, path = "/runs") {
  await page.goto(base + path);
  assert.match(new URL(page.url()).pathname, /^\/login$/, "a page without a session leads to the login form");
  await page.fill("#token", token);
  await Promise.all([page.waitForURL((url) => url.pathname !== "/login"), page.click("#login")]);
}

async function runStatus(page) {
  return (await page.textContent("#run-status")).trim();
}

test("login form starts a session", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, "/runs?status=failed");
    assert.equal(new URL(page.url()).pathname, "/runs", "the login returns to the page asked for");
    assert.equal(new URL(page.url()).searchParams.get("status"), "failed");
    assert.equal(await page.textContent("h1"), "Runs");
    const cookie = (await context.cookies()).find((c) => c.name === "caraml_session");
    assert.ok(cookie, "the session cookie is set");
    assert.equal(cookie.httpOnly, true, "scripts cannot read the session cookie");
    assert.equal(cookie.sameSite, "Strict");
    assert.equal(await page.evaluate(() => document.cookie), "", "document.cookie shows no session");

    await page.click("header form.logout button");
    await page.waitForURL((url) => url.pathname === "/login");
    await page.goto(base + "/runs");
    assert.equal(new URL(page.url()).pathname, "/login", "after logging out, pages lead to the login form");
  } finally {
    await context.close();
  }
});

test("run page turns nodes green without a reload", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, `/runs/${runs.live}`);
    await page.waitForFunction(() => document.body.dataset.live === "open");
    const nodes = await page.locator("svg.dag g.node").count();
    assert.ok(nodes >= 10, `the DAG draws every task, got ${nodes} nodes`);
    assert.equal(await runStatus(page), "running");
    const marker = `loaded-${Date.now()}`;
    await page.evaluate((value) => {
      window.__loadMarker = value;
    }, marker);

    await sendGo(runs.live);

    await page.waitForFunction(() => {
      const all = document.querySelectorAll("svg.dag g.node");
      return all.length > 0 && Array.from(all).every((node) => node.classList.contains("s-succeeded"));
    });
    await page.waitForFunction(() => document.getElementById("run-status").textContent === "succeeded");
    await page.waitForFunction(() => document.body.dataset.live === "done");
    assert.equal(
      await page.evaluate(() => window.__loadMarker),
      marker,
      "the marker set after load is still there, so the page was not reloaded",
    );
    const updates = Number(await page.evaluate(() => document.body.dataset.liveUpdates));
    assert.ok(updates >= 2, `the page applied several live updates, got ${updates}`);
    const progress = await page.textContent("#run-progress-text");
    assert.match(progress, /^(\d+) of \1 tasks succeeded$/, `progress shows every task done: ${progress}`);
    const statuses = await page.locator("table.tasks .c-status .badge").allTextContents();
    assert.ok(statuses.every((status) => status === "succeeded"), `task table updated: ${statuses}`);
    assert.equal(await page.locator("#cancel-run").isVisible(), false, "cancel is hidden once the run ended");

    // Let the timeline redraw with the final times before the picture.
    await page.waitForTimeout(300);
    for (const path of screenshots) {
      await page.screenshot({ path });
    }
  } finally {
    await context.close();
  }
});

async function sendGo(run) {
  const response = await fetch(`${base}/v1/runs/${run}/signals/go`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ payload: { approved: true, by: "browser test" } }),
  });
  assert.equal(response.status, 201, `the signal is delivered: ${await response.text()}`);
}

test("collapsed group counts follow live updates", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, `/runs/${runs.wide}`);
    await page.waitForFunction(() => document.body.dataset.live === "open");
    const group = page.locator("svg.dag g.group");
    assert.equal(await group.count(), 1, "the 320 siblings are one box");
    assert.match(await group.locator("text.name").textContent(), /part\* ×320/);
    assert.equal(await group.locator("text.counts").textContent(), "320 blocked");

    await sendGo(runs.wide);
    await page.waitForFunction(
      () => document.querySelector("svg.dag g.group text.counts").textContent === "320 succeeded",
    );
    assert.equal(await group.getAttribute("class"), "group s-succeeded", "the box turns green");
    const width = await group.locator("rect.seg[data-s=succeeded]").getAttribute("width");
    assert.equal(width, "134", "the succeeded segment fills the bar");
  } finally {
    await context.close();
  }
});

test("signal and cancel buttons act on a running run", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, `/runs/${runs.cancel}`);
    assert.equal(await runStatus(page), "running");
    await page.fill("#signal-name", "note");
    await page.fill("#signal-payload", '{"from": "browser"}');
    await Promise.all([page.waitForURL(/notice=signalled/), page.click("#send-signal")]);
    const events = await page.textContent("table.events");
    assert.ok(events.includes("run.signal"), "the signal is in the event history");
    assert.ok(events.includes('"name":"note"'), `the event names the signal: ${events}`);

    page.once("dialog", (dialog) => dialog.accept());
    await Promise.all([page.waitForURL(/notice=cancelled/), page.click("#cancel-run")]);
    assert.equal(await runStatus(page), "cancelled");
    assert.equal(await page.locator("#cancel-run").isVisible(), false, "no cancel button on a cancelled run");
    assert.equal(await page.locator("#retry-run").isVisible(), true, "a cancelled run can be retried");
  } finally {
    await context.close();
  }
});

test("retry button reruns a failed run to success", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, `/runs/${runs.retry}`);
    assert.equal(await runStatus(page), "failed");
    const error = await page.textContent("table.tasks .c-error");
    assert.match(error, /first attempt fails/, "the task's error is shown");
    await Promise.all([page.waitForURL(/notice=retried/), page.click("#retry-run")]);
    await page.waitForFunction(() => document.getElementById("run-status").textContent === "succeeded");
    await page.waitForFunction(() =>
      Array.from(document.querySelectorAll("svg.dag g.node")).every((node) => node.classList.contains("s-succeeded")),
    );
    const attempts = await page.textContent("table.tasks .c-attempts");
    assert.equal(attempts.trim(), "2", "the task ran a second attempt");
  } finally {
    await context.close();
  }
});

test("viewer token shows no change buttons", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, viewerToken, `/runs/${runs.cancel}`);
    assert.equal(await runStatus(page), "cancelled");
    for (const selector of ["#cancel-run", "#retry-run", "#send-signal", "form[action$='/retry']"]) {
      assert.equal(await page.locator(selector).count(), 0, `${selector} is absent for a viewer`);
    }
    await page.goto(base + "/runs");
    assert.equal(await page.locator("form.bulk").count(), 0, "no bulk actions for a viewer");
    await page.goto(base + "/dead-letters");
    assert.equal(await page.locator("form[action$='/retry']").count(), 0, "no retry buttons for a viewer");

    // The handlers check the role again: a post with a valid CSRF token is still rejected.
    const csrf = await page.getAttribute("header form.logout input[name=csrf]", "value");
    const rejected = await context.request.post(`${base}/runs/${runs.cancel}/retry`, {
      form: { csrf },
      maxRedirects: 0,
    });
    assert.equal(rejected.status(), 403, "a viewer's retry is rejected");
    assert.match(await rejected.text(), /viewer role/);
  } finally {
    await context.close();
  }
});

test("posts without the CSRF token or from another origin are rejected", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, `/runs/${runs.retry}`);
    const missing = await context.request.post(`${base}/runs/${runs.retry}/cancel`, {
      form: { csrf: "0".repeat(64) },
      maxRedirects: 0,
    });
    assert.equal(missing.status(), 403, "a wrong CSRF token is rejected");
    assert.match(await missing.text(), /CSRF/);

    const csrf = await page.getAttribute("header form.logout input[name=csrf]", "value");
    const foreign = await context.request.post(`${base}/runs/${runs.retry}/cancel`, {
      form: { csrf },
      headers: { origin: "http://attacker.invalid" },
      maxRedirects: 0,
    });
    assert.equal(foreign.status(), 403, "a post from another origin is rejected");
    assert.equal(await runStatus(page), "succeeded", "neither post changed the run");
  } finally {
    await context.close();
  }
});

test("HTML in inputs, outputs and errors renders as text", async () => {
  const { context, page } = await newPage();
  try {
    await logIn(page, adminToken, `/runs/${runs.inject}`);
    const text = await page.textContent("main");
    assert.ok(text.includes("<script>"), "the script tag is shown as text");
    assert.ok(text.includes("<img src=x onerror="), "the img tag is shown as text");
    assert.equal(await page.evaluate(() => window.__injected), undefined, "no injected script ran");
    assert.equal(await page.locator("main img").count(), 0, "no injected image element exists");
    assert.equal(await page.locator("script").count(), 1, "only the dashboard's own script is on the page");

    const full = page.locator("table.tasks a.full").first();
    if (await full.isVisible()) {
      await full.click();
      await page.waitForSelector("pre.full-output");
    }
    await page.goto(base + "/dead-letters");
    assert.ok((await page.textContent("main")).includes("<img src=x onerror="), "the error is text on the dead letters page");
    assert.equal(await page.evaluate(() => window.__injected), undefined, "no injected script ran there");
    assert.equal(await page.locator("main img").count(), 0);
  } finally {
    await context.close();
  }
});
