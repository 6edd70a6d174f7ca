// Browser test of the terminal against the real stack (started by
// integration-tests/web_browser_test.py, which passes the gateways' addresses in WEB_TEST_URLS).
// Debian's Chromium through playwright-core; axe-core on every screen; screenshots (PNG) and
// axe reports in WEB_TEST_OUTPUT.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

import AxeBuilder from "@axe-core/playwright";
import { chromium } from "playwright-core";

const urls = JSON.parse(process.env.WEB_TEST_URLS);
const out = process.env.WEB_TEST_OUTPUT;
const control = process.env.WEB_TEST_CONTROL;
const T = 20000;
const started = Date.now();
const failures = [];
let step = "start";

function log(msg) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);
}
function check(cond, what) {
  if (!cond) {
    failures.push(`${step}: ${what}`);
    log(`FAIL ${what}`);
  }
}
async function shot(page, name) {
  await page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });
}
async function textOf(page) {
  return page.evaluate(() => document.body.innerText);
}
async function waitText(page, re, timeout = T, scope = "body") {
  try {
    await page.waitForFunction(
      ([src, flags, sel]) => new RegExp(src, flags).test(document.querySelector(sel)?.innerText ?? ""),
      [re.source, re.flags, scope],
      { timeout, polling: 200 },
    );
  } catch (e) {
    throw new Error(`timed out waiting for ${re} in ${scope}: ${(await textOf(page)).slice(0, 1500)}`);
  }
}
const axeRuns = [];
async function axe(page, name) {
  const res = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]).analyze();
  writeFileSync(path.join(out, `axe-${name}.json`), JSON.stringify(res.violations, null, 2));
  const serious = res.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  axeRuns.push(`${name}: ${res.violations.length} violations (${serious.length} serious or critical), ${res.passes.length} rules passed`);
  for (const v of serious) log(`axe ${name}: ${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
  check(serious.length === 0, `axe-core: no serious violations on ${name}`);
}
async function gateway(verb, name) {
  process.stdout.write(`@@control ${verb} ${name}\n`);
  await readFile(`${control}.in`, "utf8");
}
function rawPost(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const profile = mkdtempSync(path.join(os.tmpdir(), "safeharbor-chromium-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
  locale: "en-US",
  timezoneId: "America/Los_Angeles",
});
ctx.setDefaultTimeout(T);

async function fillReferral(page, { ref, name, contact }) {
  await page.getByLabel("Your name").fill("Officer Lee");
  await page.getByLabel("Phone the provider can call you on (required)").fill("+1 206-555-0142");
  await page.getByLabel("Youth reference (required)").fill(ref);
  await page.getByLabel("Age (required)").fill("15");
  await page.getByLabel("Gender").selectOption({ label: "Female" });
  await page.getByLabel("Spanish").check();
  await page.waitForSelector('select[name="county"] option[value="53033"]', { state: "attached" });
  await page.getByLabel("County (required)").selectOption("53033");
  await page.getByLabel("Latitude").fill("47.6062");
  await page.getByLabel("Longitude").fill("-122.3321");
  if (name) {
    await page.getByLabel("Yes, the youth consents (13 or older)").check();
    await page.getByLabel("Name", { exact: true }).fill(name);
    await page.getByLabel("Contact", { exact: true }).fill(contact);
  }
}

try {
  // ------------------------------------------------------------------ the terminals open
  step = "open";
  const officer = await ctx.newPage();
  const provA = await ctx.newPage();
  const provB = await ctx.newPage();
  await officer.goto(urls.officer);
  await waitText(officer, /This terminal acts for \[TEST\] Seattle Police Department/, T, "#terminal");
  check((await textOf(officer)).includes("spiffe://safeharbor/org/demo-le-seattle-pd/role/law_enforcement"),
    "the officer's page names the identity its gateway holds");
  await officer.keyboard.press("Tab");
  check(await officer.evaluate(() => document.activeElement?.classList.contains("skip")), "the first Tab reaches the skip link");
  for (const [p, u, who] of [[provA, urls.provider_a, "Harbor House Seattle"], [provB, urls.provider_b, "South Sound Youth Haven"]]) {
    await p.goto(u);
    await waitText(p, new RegExp(who), T, "#terminal");
    await waitText(p, /Live: connected/, T, '[data-testid="live"]');
  }
  await waitText(provA, /Harbor House HOPE center/, T, "section[aria-labelledby=census-h]");
  log("terminals open: officer, provider A, provider B");

  // ------------------------------------------------------------------ capacity check, then intake
  step = "intake";
  await fillReferral(officer, { ref: "SPD-0042", name: "Jane Q", contact: "+1 206-555-0199 (aunt)" });
  const searchBodies = [];
  officer.on("request", (r) => {
    if (r.url().includes("SearchAvailability")) searchBodies.push(r.postDataBuffer() ?? Buffer.alloc(0));
  });
  await officer.getByRole("button", { name: "Check beds nearby" }).click();
  await waitText(officer, /Harbor House HOPE center/, T, '[data-testid="capacity"]');
  const cap = await officer.locator('[data-testid="capacity"]').innerText();
  check(/just now/.test(cap), "the capacity check says how fresh each count is");
  check(/\b3\b/.test(cap), "the capacity check shows the 3 free beds (4 licensed, 1 occupied)");
  check(searchBodies.length === 1, "one SearchAvailability call");
  for (const b of searchBodies) {
    const s = b.toString("latin1");
    check(!s.includes("SPD-0042") && !s.includes("Jane"), "the capacity check sends no youth data");
  }
  await shot(officer, "01-intake-form");
  await axe(officer, "intake-form");

  await officer.getByRole("button", { name: "Send referral" }).click();
  await waitText(officer, /Referral ref-/, T, "section.status");
  const ref1 = (await officer.locator("section.status h2").innerText()).replace("Referral ", "").trim();
  log(`referral 1 sent: ${ref1}`);
  check(await officer.getByLabel("Name", { exact: true }).inputValue() === "", "the identifying details are cleared from the form once sent");

  // ------------------------------------------------------------------ the offer arrives live
  step = "offer";
  await waitText(provA, /Youth SPD-0042/, T, '[data-testid="inbox"]');
  await waitText(provA, /min \d\d s left to answer/, T, '[data-testid="inbox"]');
  const offerText = await textOf(provA);
  check(!offerText.includes("Jane Q"), "an offered (not yet accepted) provider sees no identifying details");
  check(/Spanish/.test(offerText) && /a bed tonight/.test(offerText), "the offer shows the youth's languages and needs");
  await shot(provA, "02-inbox-offer");
  await axe(provA, "inbox-offer");
  log("the offer reached provider A live");

  step = "accept";
  await provA.getByRole("button", { name: "Accept referral" }).click();
  await waitText(provA, /Identifying details/, T, '[data-testid="inbox"]');
  check((await textOf(provA)).includes("Jane Q"), "the accepting provider sees the identifying details shared with consent");
  await shot(provA, "03-inbox-accepted");

  step = "handoff-place";
  await waitText(officer, /Bring the youth to/, T, "section.status");
  const ready = await officer.locator("section.status").innerText();
  check(/Harbor House Seattle/.test(ready) && /1 Main St/.test(ready), "the officer sees where to bring the youth");
  check(!(await textOf(officer)).includes("Jane Q"), "no identifying details on the officer's page");
  await shot(officer, "04-officer-handoff");
  await officer.locator("section.status").screenshot({ path: path.join(out, "04-officer-handoff-detail.png") });
  await axe(officer, "officer-handoff");
  log("the officer sees where to bring the youth");

  // ------------------------------------------------------------------ the inbox resumes from its cursor
  step = "reconnect";
  await gateway("stop", "provider_a");
  await waitText(provA, /Live updates interrupted/, T, '[data-testid="live"]');
  await shot(provA, "05-inbox-reconnecting");
  await fillReferral(officer, { ref: "SPD-0043", name: "Sam R", contact: "+1 425-555-0100" });
  await officer.getByRole("button", { name: "Send referral" }).click();
  await waitText(officer, new RegExp(`Referral (?!${ref1})ref-`), T, "section.status");
  const ref2 = (await officer.locator("section.status h2").innerText()).replace("Referral ", "").trim();
  log(`referral 2 sent while provider A's gateway was down: ${ref2}`);
  await new Promise((r) => setTimeout(r, 1500)); // routed (and offered to A) while A is away
  await gateway("start", "provider_a");
  await waitText(provA, /Youth SPD-0043/, 30000, '[data-testid="inbox"]');
  check(/resumed after update \d+/.test(await provA.locator('[data-testid="live"]').innerText()) ||
    /last update/.test(await provA.locator('[data-testid="live"]').innerText()), "the inbox reconnected");
  log("provider A's inbox resumed from its cursor and shows the offer made while it was away");

  step = "decline";
  const card2 = provA.locator(`article[data-referral="${ref2}"]`);
  await card2.getByText("Decline…").click();
  check(await card2.getByLabel("Reason").locator("option").count() === 7, "the decline offers the seven reason codes a decline may use");
  // "Other" needs a few words: said on the page, nothing sent.
  await card2.getByLabel("Reason").selectOption({ label: "Other (say what in the details)" });
  await card2.getByRole("button", { name: "Decline referral" }).click();
  await waitText(provA, /Say in the details why you decline/, T, `article[data-referral="${ref2}"]`);
  await card2.getByText("Decline…").click();
  await card2.getByLabel("Reason").selectOption({ label: "At capacity" });
  await axe(provA, "inbox-decline");
  await card2.getByRole("button", { name: "Decline referral" }).click();
  await waitText(provA, /declined: At capacity/i, T, `article[data-referral="${ref2}"]`);
  await waitText(provB, /Youth SPD-0043/, 30000, '[data-testid="inbox"]');
  const bText = await textOf(provB);
  check(!bText.includes("Sam R") && !bText.includes("Jane Q") && !bText.includes("SPD-0042"),
    "another provider's page shows no identifying details and no other provider's referral");
  await shot(provB, "06-inbox-provider-b");
  log("declined with a reason code; rerouted to provider B, whose page shows no identifying details");

  // ------------------------------------------------------------------ "waitlist until"
  step = "waitlist";
  const cardB = provB.locator(`article[data-referral="${ref2}"]`);
  await cardB.getByText("Waitlist until…").click();
  const until = cardB.getByLabel("A bed frees at");
  // Hours ahead of now, read in the page (its inputs are in the page's time zone).
  const [min, max, value] = await until.evaluate((el) =>
    [el.min, el.max, el.value].map((v) => (new Date(v).getTime() - Date.now()) / 3600e3));
  check(max <= 24 && max > 23.9 && min > 0 && value > 1,
    `the time picker offers a time after now, at most 24 hours ahead (min +${min.toFixed(2)} h, max +${max.toFixed(2)} h, default +${value.toFixed(2)} h)`);
  await cardB.getByLabel("Note (optional, no youth names)").fill("a bed frees after the morning discharge");
  await axe(provB, "inbox-waitlist");
  await shot(provB, "06b-inbox-waitlist");
  await cardB.getByRole("button", { name: "Waitlist referral" }).click();
  await waitText(provB, /waitlist until \d/i, T, `article[data-referral="${ref2}"]`);
  log("provider B answered \"waitlist until\" with a time and a note");

  // ------------------------------------------------------------------ hand-off, then "youth declined"
  step = "confirm";
  const card1 = provA.locator(`article[data-referral="${ref1}"]`);
  await card1.getByRole("button", { name: "Confirm hand-off: the youth is here" }).click();
  await waitText(provA, /Handed off/, T, `article[data-referral="${ref1}"]`);
  await officer.getByRole("button", { name: ref1 }).click();
  await waitText(officer, /Connected to services/, T, "section.status");
  log("hand-off confirmed; the officer's page says connected");

  step = "outcome";
  await card1.getByLabel("Youth declined services").check();
  await card1.getByRole("button", { name: "Record outcome" }).click();
  await waitText(provA, /Youth declined services/, T, `article[data-referral="${ref1}"] [data-testid="status"]`);
  await shot(provA, "07-inbox-outcome");
  await officer.reload();
  await waitText(officer, /Connected to services/, T, "section.status");
  const after = await textOf(officer);
  check(!/declin/i.test(after), "the officer's page never says the youth declined");
  check(!after.includes("Jane Q") && !after.includes("Sam R"), "no identifying details on the officer's page");
  check(!/Bring the youth to/.test(await officer.locator("section.status").innerText()), "after the hand-off the officer sees only 'connected'");
  await shot(officer, "08-officer-connected");
  log("after the outcome the officer's page still says only 'connected'");

  // ------------------------------------------------------------------ child welfare
  step = "child-welfare";
  const cw = await ctx.newPage();
  await cw.goto(urls.child_welfare);
  await waitText(cw, /child welfare on call/, T, "#terminal");
  await cw.getByRole("button", { name: ref2 }).click();
  await waitText(cw, /Ranked candidates/, T, "section.status");
  const cwText = await cw.locator("section.status").innerText();
  check(/Declined/.test(cwText) && /At capacity/.test(cwText), "child welfare sees the offers with the decline's reason code");
  check(/Waitlist until \d/.test(cwText) && /morning discharge/.test(cwText), "child welfare sees provider B's waitlist answer and its note");
  check(/csec|km/i.test(cwText), "child welfare sees the candidates with the reasons for their rank");
  check(!(await textOf(cw)).includes("Sam R"), "child welfare's page shows no identifying details");
  await shot(cw, "09-child-welfare-status");
  await cw.locator("section.status").screenshot({ path: path.join(out, "09-child-welfare-status-detail.png") });
  await axe(cw, "child-welfare-status");

  // ------------------------------------------------------------------ census in a few clicks
  step = "census";
  const form = provA.locator('form[aria-label="Census of Harbor House HOPE center"]');
  await form.getByLabel("General beds occupied").fill("2");
  await form.getByRole("button", { name: "Report census (confirmed now)" }).click();
  await waitText(provA, /Census reported at/, T, "section[aria-labelledby=census-h]");
  await shot(provA, "10-inbox-census");
  await provA.locator("section[aria-labelledby=census-h]").screenshot({ path: path.join(out, "10-inbox-census-detail.png") });
  await axe(provA, "inbox-census");

  // ------------------------------------------------------------------ a service down: said, not spun
  step = "unreachable";
  const down = await ctx.newPage();
  await down.goto(urls.unreachable);
  await waitText(down, /Seattle Police Department/, T, "#terminal");
  await fillReferral(down, { ref: "SPD-0099" });
  const t0 = Date.now();
  await down.getByRole("button", { name: "Send referral" }).click();
  await waitText(down, /referral service is unreachable/, T, "#intake-form");
  check(Date.now() - t0 < 15000, "the page says the service is unreachable within 15 s");
  await shot(down, "11-intake-service-unreachable");

  // ------------------------------------------------------------------ the gateway's own guards
  step = "gateway";
  const api = `${urls.officer}safeharbor.referrals.v1.ReferralService/GetReferral`;
  const json = { "Content-Type": "application/json", "Connect-Protocol-Version": "1" };
  check(await rawPost(api, { ...json, Origin: "http://evil.example" }, '{"id":"x"}') === 403, "a foreign origin is refused");
  check(await rawPost(api, { ...json, Host: "rebound.example" }, '{"id":"x"}') === 403, "a foreign host name is refused");
  check(await rawPost(api, json, JSON.stringify({ id: "x".repeat(200000) })) === 413, "an oversized request is refused");
  const notServed = `${urls.officer}safeharbor.referrals.v1.ReferralService/AcceptReferral`;
  check(await rawPost(notServed, json, '{"id":"x"}') === 501, "a method the officer's screens do not use is not served (unimplemented)");

  // ------------------------------------------------------------------ a reload keeps nothing but finds everything
  step = "reload";
  await provA.reload();
  await waitText(provA, /Youth SPD-0042/, T, '[data-testid="inbox"]');
  check(!(await textOf(provA)).includes("Jane Q"), "after a reload the identifying details are read again only on request");
  await provA.getByRole("button", { name: /Show identifying details/ }).count().then((n) =>
    check(n === 0, "no identifying-details button on a closed referral"));

  // ------------------------------------------------------------------ a phone screen
  step = "phone";
  for (const [p, name] of [[officer, "12-phone-intake"], [provA, "13-phone-inbox"]]) {
    await p.setViewportSize({ width: 390, height: 844 });
    await p.evaluate(() => window.scrollTo(0, 0));
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflow <= 0, `${name}: nothing wider than the phone screen (overflow ${overflow}px)`);
    await p.screenshot({ path: path.join(out, `${name}.png`), fullPage: false });
    await axe(p, name);
  }
} catch (e) {
  failures.push(`${step}: ${e.stack || e}`);
  log(`ERROR in ${step}: ${e.message}`);
  for (const p of ctx.pages()) {
    try {
      await p.screenshot({ path: path.join(out, `failure-${ctx.pages().indexOf(p)}.png`), fullPage: true });
    } catch {}
  }
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}

for (const a of axeRuns) log(`axe-core ${a}`);
if (failures.length) {
  console.log(`${failures.length} failure(s):\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
log("all browser checks passed");
