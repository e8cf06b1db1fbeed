// The saga console in a real browser: an admin follows an order's swimlane
// and its trace, sees the live feed, and replays a dead letter; a customer
// is kept out. Run by scripts/e2e.sh with storefront.test.mjs (the same
// browser and stack).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  browserUp, browserDown, newPage, shot, signUp, signIn, addToCart, settledStatus, unique, axeSerious, WEB,
} from "./helpers.mjs";

const ADMIN_EMAIL = process.env.ADMIN_EMAIL;
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD;
// A command that puts one poison message on the dead-letter topic's source
// (scripts/e2e.sh sets it: minishop-ops against the stack's broker).
const POISON = process.env.E2E_POISON_COMMAND;

before(browserUp);
after(browserDown);

async function admin() {
  // Without the CSP only so that axe-core can be injected.
  const page = await newPage({ bypassCSP: true });
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  assert.match(await page.locator("header nav").innerText(), /Console/, "the admin is signed in");
  return page;
}

test("a customer is kept out of the console", async () => {
  const page = await newPage();
  await signUp(page, unique("nosy"));
  const response = await page.goto(`${WEB}/console`);
  assert.equal(response.status(), 403);
  assert.match(await page.getByRole("alert").innerText(), /admins only/);
  await shot(page, "console-forbidden");
  const anonymous = await newPage();
  await anonymous.goto(`${WEB}/console/dlq`);
  assert.match(anonymous.url(), /\/signin\?next=%2Fconsole%2Fdlq/);
});

test("an admin follows an order's swimlane and its trace", async () => {
  // A customer's order, paid or declined: either is a whole saga.
  const customer = await newPage();
  await signUp(customer, unique("traced"));
  await addToCart(customer, "Fountain pen");
  await customer.getByRole("button", { name: "Place order" }).click();
  await customer.waitForURL(/\/orders\/\d+$/);
  const orderId = customer.url().split("/").pop();
  await settledStatus(customer);

  const page = await admin();
  // The lag and the dead letters are measured in the background (every 5 s).
  for (let i = 0; i < 20; i++) {
    await page.goto(`${WEB}/console`);
    if (await page.getByTestId("lag").count()) break;
    await page.waitForTimeout(1000);
  }
  await shot(page, "console");
  assert.deepEqual(await axeSerious(page), [], "axe on /console");
  assert.match(await page.getByTestId("instances").innerText(), /order-service\s+up\s+ready/);
  assert.match(await page.getByTestId("lag").innerText(), /payment-service/);
  assert.match(await page.locator("main").innerText(), /\d+ dead letters?/);
  assert.match(await page.getByTestId("feed").innerText(), new RegExp(`order ${orderId}`));
  await page.getByRole("link", { name: `#${orderId}`, exact: true }).click();
  await page.waitForURL(new RegExp(`/console/orders/${orderId}$`));
  // The events reach the feed within a moment of being published.
  const lane = page.getByTestId("swimlane");
  for (let i = 0; i < 20 && !(await lane.innerText()).includes("On the topic: order_created"); i++) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  await shot(page, "console-swimlane");
  assert.deepEqual(await axeSerious(page), [], "axe on the swimlane");
  const text = await lane.innerText();
  for (const expected of ["Order placed", "Stock reserved", "On the topic: order_created", "partition@offset", "event id", "trace:"]) {
    assert.ok(text.includes(expected), `the swimlane shows "${expected}":\n${text}`);
  }
  // Each step in its service's lane.
  assert.ok(await page.locator('[data-lane="product-service"]', { hasText: "Stock reserved" }).count() > 0);
  assert.ok(await page.locator('[data-lane="order-service"]', { hasText: "Order placed" }).count() > 0);
  assert.ok(await page.locator('[data-lane="payment-service"]', { hasText: /On the topic: payment_(success|failed)/ }).count() > 0);

  // Its trace: every service of the saga in one waterfall (spans arrive
  // within the exporters' batch delay).
  const link = await page.getByTestId("trace-link").getAttribute("href");
  // An admin finds the same trace from the order's own page.
  await page.goto(`${WEB}/orders/${orderId}`);
  assert.equal(await page.getByTestId("trace-link").getAttribute("href"), link);
  let summary = "";
  for (let i = 0; i < 30; i++) {
    await page.goto(`${WEB}${link}`);
    summary = await page.getByTestId("trace-summary").innerText().catch(() => "");
    if (["order-service", "product-service", "payment-service", "notification-service"].every((s) => summary.includes(s))) break;
    await page.waitForTimeout(1000);
  }
  await shot(page, "console-trace");
  assert.deepEqual(await axeSerious(page), [], "axe on the trace");
  for (const service of ["web", "order-service", "product-service", "payment-service", "notification-service"]) {
    assert.ok(summary.includes(service), `the trace crosses ${service}: ${summary}`);
  }
  assert.ok(await page.locator("[data-testid=waterfall] rect").count() > 5);
  await page.goto(`${WEB}/console/traces`);
  await shot(page, "console-traces");
});

test("an admin replays a dead letter", { skip: !POISON && "E2E_POISON_COMMAND is not set" }, async () => {
  const page = await admin();
  const total = async () => {
    await page.goto(`${WEB}/console/dlq`);
    return Number(/(\d+) on the dead-letter topic/.exec(await page.locator("main").innerText())[1]);
  };
  /** The number of letters once it is above `than` (each consumer group dead-letters a poison message). */
  const above = async (than) => {
    let now = await total();
    for (let i = 0; i < 40 && now <= than; i++) {
      await page.waitForTimeout(1000);
      now = await total();
    }
    assert.ok(now > than, `more than ${than} dead letters (${now})`);
    return now;
  };
  const before = await total();
  execFileSync("sh", ["-c", POISON, "poison", `e2e-poison-${Date.now()}`], { stdio: "inherit" });
  const poisoned = await above(before);
  await shot(page, "console-dlq");
  assert.deepEqual(await axeSerious(page), [], "axe on the dead letters");
  // The newest letter: the last row.
  const rows = page.getByTestId("letters").locator("tbody tr");
  assert.match(await rows.last().innerText(), /no event_type|malformed|not an event/i);
  await rows.last().getByRole("button", { name: /^Replay letter/ }).click();
  await page.waitForLoadState("load");
  assert.match(await page.getByRole("status").innerText(), /Replayed 1 letter onto/);
  // Replayed, it is poison still: the consumers dead-letter it again.
  await above(poisoned);
});
