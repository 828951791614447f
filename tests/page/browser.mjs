// The control page in Debian's Chromium (driven by playwright-core), against a real rackbox
// started by tests/page_browser.rs. The machine's side is played through rackbox's real
// endpoints: the boot script (which carries the per-boot token) and /api/agent/v1.
//
// Env: RACKBOX_URL, RACKBOX_ADMIN_PASSWORD, RACKBOX_MACHINES (JSON {system_id: mac}),
// PAGE_TOOLS (the directory with node_modules), SCREENSHOTS (a directory).
// Prints "ok <step>" per step; exits non-zero with the reason on the first failure.

import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.PAGE_TOOLS, "package.json"));
const { chromium } = require("playwright-core");
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const URL = process.env.RACKBOX_URL;
const PASSWORD = process.env.RACKBOX_ADMIN_PASSWORD;
const MACS = JSON.parse(process.env.RACKBOX_MACHINES);
const SHOTS = process.env.SCREENSHOTS;
const STEP_MS = 15000;

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

function ok(step) {
  console.log("ok " + step);
}

// --- the machine's side ---------------------------------------------------------------

async function bootToken(systemId) {
  const script = await (await fetch(`${URL}/boot/${MACS[systemId]}.ipxe`)).text();
  const found = script.match(/rackbox\.token=(\S+)/);
  expect(found, `the boot script of ${systemId} carries no token:\n${script}`);
  return found[1];
}

async function agent(token, call, body) {
  const r = await fetch(`${URL}/api/agent/v1/${call}`, {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(r.ok, `agent ${call}: ${r.status} ${await r.text()}`);
}

// --- the browser's side ---------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--font-render-hinting=none",
  ],
});

const violations = [];

async function newPage(options = {}) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    reducedMotion: "reduce",
    ...options,
  });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  // A script or style the Content-Security-Policy refuses is a defect of the page.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) {
      violations.push(`${page.url()}: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => violations.push(`${page.url()}: ${e.message}`));
  return page;
}

async function login(page) {
  await page.goto(`${URL}/machines`);
  expect(page.url().includes("/login"), `not sent to the login form: ${page.url()}`);
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${URL}/machines`, { timeout: STEP_MS });
}

// No serious or critical accessibility violation on the page as it is now.
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21aa"] })
  );
  const bad = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  expect(
    bad.length === 0,
    `${name}: accessibility violations:\n` +
      bad.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target).join(" ")}`).join("\n")
  );
}

// The page in light and dark mode, into SCREENSHOTS.
// (axe runs in the page: a page with JavaScript off gets its screenshots only; the same pages
// are checked with it on.)
async function screenshots(page, name, { axe = true } = {}) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: path.join(SHOTS, `${name}-${scheme}.png`), fullPage: true });
    if (axe) await accessible(page, `${name} (${scheme})`);
    console.log(`screenshot ${name}-${scheme}`);
  }
  await page.emulateMedia({ colorScheme: "light" });
}

async function statusOf(page, systemId) {
  return (await page.locator(`#summary-${systemId} .status`).first().textContent()).trim();
}

async function waitStatus(page, systemId, wanted) {
  await page.waitForFunction(
    ([id, name]) => {
      const el = document.querySelector(`#summary-${id} .status`);
      return el && el.textContent.trim() === name;
    },
    [systemId, wanted],
    { timeout: STEP_MS }
  );
}

try {
  const page = await newPage();
  await login(page);
  ok("log in");

  // Find a machine by search.
  await page.getByLabel("Search").fill("web001");
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForURL(/q=web001/, { timeout: STEP_MS });
  const rows = page.locator("table.machines tbody tr");
  expect((await rows.count()) === 1, `search shows ${await rows.count()} rows`);
  expect((await rows.first().textContent()).includes("host-web001"), "search finds host-web001");
  ok("find a machine by search");
  await page.goto(`${URL}/machines`);
  await screenshots(page, "machines");

  // Deploy it from its page, and watch its progress and status change without a reload.
  await page.getByRole("link", { name: "host-web001" }).click();
  await page.waitForURL(`${URL}/machines/web001`, { timeout: STEP_MS });
  await screenshots(page, "machine");
  await page.evaluate(() => (window.notReloaded = true));
  await page.getByRole("link", { name: "Deploy…" }).click();
  const dialog = page.locator("dialog#dialog-deploy");
  expect(await dialog.evaluate((d) => d.open), "the deploy dialog opens");
  await dialog.getByLabel("User data (cloud-init, optional)").fill("#cloud-config\n");
  await dialog.getByRole("button", { name: "Deploy host-web001" }).click();
  await waitStatus(page, "web001", "Deploying");
  ok("deploy from the page");

  await page.evaluate(() => (window.notReloaded = true));
  const token = await bootToken("web001");
  const total = 1024 * 1024 * 1024;
  await agent(token, "progress", { message: "writing image", percent: 25, bytes: total / 4 });
  await page.waitForFunction(
    (id) => document.querySelector(`#summary-${id} progress`)?.value === 25,
    "web001",
    { timeout: STEP_MS }
  );
  await agent(token, "progress", { message: "writing image", percent: 60, bytes: Math.round((total * 6) / 10) });
  await page.waitForFunction(
    (id) => document.querySelector(`#summary-${id} progress`)?.value === 60,
    "web001",
    { timeout: STEP_MS }
  );
  const progressText = await page.locator(`#summary-web001 .progress-text`).textContent();
  expect(/of 1\.0 GiB/.test(progressText) && /60%/.test(progressText), `progress text: ${progressText}`);
  await screenshots(page, "machine-deploying");
  await agent(token, "complete", { message: "image written" });
  await agent(token, "deployed", { message: "deployed OS booted" });
  await waitStatus(page, "web001", "Deployed");
  expect(await page.evaluate(() => window.notReloaded === true), "the page was reloaded");
  ok("progress bar advances and the status changes without a reload");

  // Release with quick erase.
  await page.reload();
  await page.getByRole("link", { name: "Release…" }).click();
  const release = page.locator("dialog#dialog-release");
  await release.getByLabel(/Quick/).check();
  await release.getByRole("button", { name: "Release host-web001" }).click();
  await waitStatus(page, "web001", "Disk erasing");
  await agent(await bootToken("web001"), "complete", { message: "disks erased (quick)" });
  await waitStatus(page, "web001", "Ready");
  ok("release with quick erase returns the machine to Ready");

  // An invalid action is refused with the reason (bulk, from the list).
  await page.goto(`${URL}/machines`);
  await page.getByLabel("Select host-web001").check();
  await page.getByLabel("Action on the selected machines").selectOption("mark_fixed");
  await page.getByRole("button", { name: "Apply to selected" }).click();
  const notice = page.locator(".notice.error");
  await notice.waitFor({ timeout: STEP_MS });
  const said = await notice.textContent();
  expect(/0 done, 1 refused/.test(said) && /host-web001: refused/.test(said) && /Ready/.test(said), `notice: ${said}`);
  ok("an invalid action is refused with the reason");

  // Keyboard only: Tab to an action, open its dialog with Enter, Escape closes it and focus
  // comes back to the button.
  await page.goto(`${URL}/machines/web002`);
  const commission = page.getByRole("link", { name: "Commission…" });
  await commission.focus();
  await page.keyboard.press("Enter");
  expect(await page.locator("dialog#dialog-commission").evaluate((d) => d.open), "Enter opens the dialog");
  await page.keyboard.press("Escape");
  expect(!(await page.locator("dialog#dialog-commission").evaluate((d) => d.open)), "Escape closes the dialog");
  expect(await commission.evaluate((el) => el === document.activeElement), "focus returns to the action");
  ok("keyboard-only dialog");

  // A fresh appliance: `/` leads the admin to the first-boot setup until it is finished.
  await page.goto(`${URL}/`);
  await page.waitForURL(`${URL}/setup`, { timeout: STEP_MS });
  await screenshots(page, "setup");
  await page.getByRole("button", { name: "No network boot for now" }).click();
  await page.getByRole("link", { name: "Back to the setup" }).click();
  await page.waitForURL(`${URL}/setup`, { timeout: STEP_MS });
  await page.getByRole("button", { name: "Finish the setup" }).click();
  await page.waitForURL(`${URL}/`, { timeout: STEP_MS });
  ok("the first-boot setup leads to the overview once finished");
  await screenshots(page, "overview");
  await page.goto(`${URL}/machines/web002/confirm/commission`);
  await screenshots(page, "confirm");
  await page.goto(`${URL}/machines?group=status`);
  await screenshots(page, "machines-grouped");
  await page.goto(`${URL}/images`);
  await screenshots(page, "images");
  await page.goto(`${URL}/network`);
  await screenshots(page, "network");
  await page.goto(`${URL}/account`);
  await screenshots(page, "account");
  await page.goto(`${URL}/admin`);
  await screenshots(page, "admin");

  // The grouped list stays open while the step below marks db001 broken in another browser:
  // its row must move to a Broken group without a reload (maas-ui #4709).
  await page.goto(`${URL}/machines?group=status`);
  await page.evaluate(() => (window.notReloaded = true));

  // One action with JavaScript off: the confirmation is a page of its own, the form posts.
  const plain = await newPage({ javaScriptEnabled: false });
  await login(plain);
  await screenshots(plain, "machines-nojs", { axe: false });
  await plain.goto(`${URL}/machines/db001`);
  await plain.getByRole("link", { name: "Mark broken…" }).click();
  await plain.waitForURL(`${URL}/machines/db001/confirm/mark_broken`, { timeout: STEP_MS });
  await plain.getByLabel("Why").fill("fan noise");
  await plain.getByRole("button", { name: "Mark broken host-db001" }).click();
  await plain.waitForURL(`${URL}/machines/db001`, { timeout: STEP_MS });
  expect((await statusOf(plain, "db001")) === "Broken", "db001 is Broken");
  ok("an action with JavaScript off");
  await page.waitForFunction(
    () => {
      const row = document.getElementById("m-db001");
      const group = row && row.closest("tbody")?.querySelector("th[scope=rowgroup]");
      return group && /^Broken \(1\)/.test(group.textContent.trim());
    },
    null,
    { timeout: STEP_MS }
  );
  expect(await page.evaluate(() => window.notReloaded === true), "the list was reloaded");
  ok("a machine that changes status moves to its new group on a list left open");

  // A phone-sized screen: the list fits its width (the table scrolls inside its wrapper).
  const phone = await newPage({ viewport: { width: 390, height: 844 } });
  await login(phone);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 1, `the machines page is ${overflow} px wider than a phone's screen`);
  await screenshots(phone, "machines-phone");
  await phone.goto(`${URL}/machines/web002`);
  const detailOverflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(detailOverflow <= 1, `a machine's page is ${detailOverflow} px wider than a phone's screen`);
  await screenshots(phone, "machine-phone");
  ok("usable on a phone-sized screen");

  const loggedOut = await newPage();
  await loggedOut.goto(`${URL}/login`);
  await screenshots(loggedOut, "login");

  expect(violations.length === 0, "the browser refused or failed:\n" + violations.join("\n"));
  ok("no Content-Security-Policy violation or script error");
} finally {
  await browser.close();
}
