// What the browser tests share: the browser (Debian's Chromium through
// playwright-core), the stack's address, screenshots, and the steps a
// customer takes (sign up, sign in, fill the cart, wait for the saga).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);

export const WEB = process.env.WEB_URL ?? "http://127.0.0.1:8085";
export const SHOTS = process.env.SCREENSHOTS ?? new URL("./screenshots/", import.meta.url).pathname;
const SAGA_TIMEOUT = 60_000;

mkdirSync(SHOTS, { recursive: true });
let browser;

export async function browserUp() {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

export async function browserDown() {
  await browser?.close();
}

export async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

export function unique(prefix) {
  return `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}@e2e.minishop.local`;
}

/**
 * Sends a sign-in or sign-up form (`fill` fills it, `send` sends it) until
 * it is not refused as too many requests: sign-ins are limited per address,
 * and every browser here has the same one. Waits as long as the page says.
 */
export async function untilNotLimited(page, fill, send) {
  for (let tries = 0; ; tries++) {
    await fill();
    const heading = await page.locator("h1").innerText();
    await send();
    await page.waitForLoadState("load");
    // Another form now (an account created, its sign-in refused): not a retry.
    if (await page.locator("h1").innerText() !== heading) return;
    const alert = await page.locator("[role=alert]").first().innerText({ timeout: 200 }).catch(() => "");
    const wait = /Too many requests\. Try again in (\d+) s/.exec(alert);
    if (!wait || tries > 20) return;
    await page.waitForTimeout(Number(wait[1]) * 1000 + 200);
  }
}

export async function signUp(page, email) {
  await untilNotLimited(page, async () => {
    await page.goto(`${WEB}/signup`);
    await page.getByLabel("Name").fill("E2E Customer");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("correct horse battery");
  }, () => page.getByRole("button", { name: "Create account" }).click());
  // Created, but its sign-in was refused for now: sign in.
  if (page.url().endsWith("/signup") && await page.getByRole("heading", { name: "Sign in" }).count()) {
    await signIn(page, email, "correct horse battery");
  }
  if (page.url() !== `${WEB}/`) {
    await shot(page, "failed-sign-up");
    const alert = await page.locator("[role=alert]").first().innerText({ timeout: 200 }).catch(() => "none");
    assert.fail(`signed up as ${email}: at ${page.url()}, alert: ${alert}`);
  }
  assert.match(await page.locator("header .who").innerText(), new RegExp(email.split("@")[0]));
}

export async function signIn(page, email, password) {
  await untilNotLimited(page, async () => {
    await page.goto(`${WEB}/signin`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(password);
  }, () => page.getByRole("button", { name: "Sign in" }).click());
}

/** Adds `name` to the cart from its product page; returns its page URL. */
export async function addToCart(page, name, quantity = 1) {
  await page.goto(`${WEB}/?q=${encodeURIComponent(name)}`);
  await page.getByRole("link", { name, exact: true }).first().click();
  await page.getByLabel("Quantity").fill(String(quantity));
  await page.getByRole("button", { name: "Add to cart" }).click();
  await page.waitForURL(/\/cart/);
  return page.url();
}

/** The order page's status once the saga has settled it. */
export async function settledStatus(page) {
  const status = page.getByTestId("order-status");
  await page.waitForSelector('[data-testid="order-status"][data-settled="true"]', { timeout: SAGA_TIMEOUT });
  return status.getAttribute("data-status");
}

export async function orderCount(page) {
  await page.goto(`${WEB}/orders`);
  return page.locator("table.lines tbody tr").count();
}


/**
 * The serious and critical accessibility violations axe-core finds on the
 * page (its page must be opened with `bypassCSP: true`: axe is injected).
 */
export async function axeSerious(page) {
  await page.addScriptTag({ path: require.resolve("axe-core/axe.min.js") });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.length})`);
}
