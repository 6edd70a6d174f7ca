// Intake: the referral form, a capacity check that sends no youth data, then the referral's live
// status as this role may see it (an officer: where to bring the youth, then only "connected";
// child welfare: the offers and the ranked candidates with their reasons).
import { AvailabilityStatus, type FacilityAvailability } from "../../gen/safeharbor/beds/v1/beds_pb.js";
import type { County, Gender, ServiceCategory } from "../../gen/safeharbor/directory/v1/directory_pb.js";
import {
  Consent_Giver,
  Consent_Scope,
  type Referral,
  type ReferrerView,
  ReferrerView_Stage,
  Urgency,
} from "../../gen/safeharbor/referrals/v1/referrals_pb.js";
import { equals, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type CreateReferralRequestSchema,
  type GetReferralResponse,
  GetReferralResponseSchema,
} from "../../gen/safeharbor/referrals/v1/referrals_pb.js";
import type { TerminalInfo } from "../shared/terminal.js";
import { beds, CALL, describe, directory, referrals, requestId } from "./api.js";
import { checkbox, dl, field, h, radios, replace } from "./dom.js";
import {
  ago,
  answerLabel,
  availabilityLabel,
  bedLabel,
  CLOSED,
  clock,
  GENDERS,
  km,
  LANGUAGES,
  offerLabel,
  placementLabel,
  SERVICES,
  stageLabel,
  statusLabel,
  URGENCY,
  when,
} from "./labels.js";

const POLL_MS = 2000;

export function intake(main: HTMLElement, info: TerminalInfo): void {
  const officer = info.role === "law_enforcement";
  const formError = h("div", { class: "banner error", role: "alert", hidden: true });
  const statusBox = h("section", { class: "card status", "aria-labelledby": "status-h", hidden: true });
  const capacityBox = h("div", { class: "capacity", "aria-live": "polite" });

  // ---- referrer
  const refName = h("input", { name: "referrer_name", autocomplete: "name", maxlength: 100 });
  const refPhone = h("input", { name: "referrer_phone", type: "tel", autocomplete: "tel", maxlength: 32, required: true });
  const refUnit = h("input", { name: "referrer_unit", maxlength: 100 });

  // ---- youth (pseudonymous)
  const youthRef = h("input", { name: "youth_reference", required: true, maxlength: 64, pattern: "[A-Za-z0-9_-]+", autocomplete: "off", spellcheck: "false" });
  const age = h("input", { name: "age", type: "number", min: 0, max: 24, step: 1, required: true, inputmode: "numeric" });
  const gender = h("select", { name: "gender" }, GENDERS.map(([v, l]) => h("option", { value: v }, l)));
  const langs = LANGUAGES.map(([code, l]) => ({ code, ...checkbox(l, { name: "language", value: code }) }));
  const otherLangs = h("input", { name: "other_languages", maxlength: 40, placeholder: "e.g. am, om", autocomplete: "off" });

  // ---- where
  const county = h("select", { name: "county", required: true }, h("option", { value: "" }, "Loading counties…"));
  const lat = h("input", { name: "latitude", type: "number", step: "any", min: -90, max: 90, inputmode: "decimal" });
  const lng = h("input", { name: "longitude", type: "number", step: "any", min: -180, max: 180, inputmode: "decimal" });
  const locate = h("button", { type: "button", class: "secondary" }, "Use this device's location");

  // ---- needs
  const bedTonight = checkbox("A safe bed tonight", { name: "placement_tonight", checked: true });
  const services = SERVICES.map(([c, l]) => ({ category: c, ...checkbox(l, { name: "service", value: c }) }));
  const urgency = radios("urgency", "Urgency", URGENCY.map(([v, l]) => [String(v), l]), String(Urgency.URGENT));

  // ---- safety
  const exploiter = checkbox("The exploiter is known to operate in this area (place the youth outside this county)");
  const runaway = checkbox("Runaway risk");
  const recruitment = checkbox("Recruitment risk");

  // ---- identifying details, only with consent
  const consent = radios(
    "consent",
    "Has the youth given informed consent to share identifying details (a name, a contact) with the provider that accepts?",
    [
      ["no", "No, or not asked: send no identifying details"],
      ["yes", "Yes, the youth consents (13 or older)"],
      ["guardian", "Yes, a guardian consents"],
    ],
    "no",
  );
  const idName = h("input", { name: "id_name", maxlength: 200, autocomplete: "off", disabled: true });
  const idContact = h("input", { name: "id_contact", maxlength: 200, autocomplete: "off", disabled: true });
  const idNotes = h("textarea", { name: "id_notes", maxlength: 2000, rows: 3, disabled: true });
  const idSet = h(
    "fieldset",
    { class: "identifying", disabled: true },
    h("legend", {}, "Identifying details (optional)"),
    field("Name", idName),
    field("Contact", idContact, "A phone or safe way to reach the youth."),
    field("Notes for the receiving provider", idNotes),
  );
  const syncConsent = () => {
    const yes = consent.value() !== "no";
    idSet.disabled = !yes;
    for (const c of [idName, idContact, idNotes]) c.disabled = !yes;
  };
  for (const r of consent.inputs) r.addEventListener("change", syncConsent);

  const checkBtn = h("button", { type: "button", class: "secondary" }, "Check beds nearby");
  const submitBtn = h("button", { type: "submit" }, "Send referral");
  let pendingRequestId = requestId(); // one per referral: a retried send is the same request

  const form = h(
    "form",
    { id: "intake-form", novalidate: true, "aria-labelledby": "intake-h" },
    h("h1", { id: "intake-h" }, "New referral"),
    h(
      "p",
      { class: "lede" },
      "Send a minor who may be a victim of commercial sexual exploitation straight to specialized services. ",
      "There is no field for a charge, an offense or an arrest: none is recorded.",
    ),
    formError,
    h(
      "fieldset",
      {},
      h("legend", {}, "You"),
      field("Your name", refName),
      field("Phone the provider can call you on (required)", refPhone),
      field("Unit or office", refUnit),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "The youth (no name here)"),
      field("Youth reference (required)", youthRef, "Your agency's case or incident reference: letters, digits, - and _. Never a name."),
      field("Age (required)", age, "0 to 24."),
      field("Gender", gender),
      h("fieldset", { class: "choices grid" }, h("legend", {}, "Languages"), langs.map((l) => l.wrap)),
      field("Other languages", otherLangs, "Two-letter ISO 639-1 codes, separated by commas."),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Where the youth is"),
      field("County (required)", county),
      h("div", { class: "pair" }, field("Latitude", lat), field("Longitude", lng)),
      locate,
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Needs"),
      bedTonight.wrap,
      h("fieldset", { class: "choices grid" }, h("legend", {}, "Services"), services.map((s) => s.wrap)),
    ),
    urgency.set,
    h("fieldset", { class: "choices" }, h("legend", {}, "Safety"), exploiter.wrap, runaway.wrap, recruitment.wrap),
    h("fieldset", {}, h("legend", {}, "Consent"), consent.set, idSet),
    h(
      "section",
      { class: "card", "aria-labelledby": "capacity-h" },
      h("h2", { id: "capacity-h" }, "Capacity check"),
      h("p", { class: "hint" }, "Beds nearby and how fresh each count is. Only the county and location are sent: no youth data."),
      checkBtn,
      capacityBox,
    ),
    h("div", { class: "actions" }, submitBtn),
  );
  const mine = h("section", { class: "card", "aria-labelledby": "mine-h" });
  // What is under way comes first (on a phone too); the form for the next youth after it.
  replace(main, statusBox, mine, form);

  // ---- counties
  directory
    .listCounties({}, CALL)
    .then((r) => {
      const sorted = [...r.counties].sort((a, b) => a.name.localeCompare(b.name));
      replace(county, h("option", { value: "" }, "Choose a county"), sorted.map((c: County) => h("option", { value: c.fips }, `${c.name} (${c.fips})`)));
      countyCentroids = new Map(sorted.map((c) => [c.fips, c]));
    })
    .catch((e) => {
      replace(county, h("option", { value: "" }, "Counties not loaded"));
      show(formError, `Counties could not be loaded: ${describe(e)}`);
    });
  let countyCentroids = new Map<string, County>();

  locate.addEventListener("click", () => {
    if (!navigator.geolocation) return show(formError, "This browser cannot share its location; type it in.");
    navigator.geolocation.getCurrentPosition(
      (p) => {
        lat.value = p.coords.latitude.toFixed(5);
        lng.value = p.coords.longitude.toFixed(5);
      },
      (err) => show(formError, `Location not available: ${err.message}`),
      { timeout: 10000 },
    );
  });

  // ---- capacity check: the place only
  checkBtn.addEventListener("click", async () => {
    hide(formError);
    const place = wherePoint();
    if (!county.value && !place) return show(formError, "Choose a county (or give a location) to check beds.");
    checkBtn.disabled = true;
    replace(capacityBox, h("p", { role: "status" }, "Checking beds…"));
    try {
      const res = await beds.searchAvailability(
        place
          ? { countyFips: county.value, near: place, radiusMeters: 80000, pageSize: 10 }
          : { countyFips: county.value, pageSize: 10 },
        CALL,
      );
      replace(capacityBox, capacityTable(res.results, Number(age.value), age.value !== ""));
    } catch (e) {
      replace(capacityBox, h("p", { class: "banner error", role: "alert" }, `Beds could not be checked: ${describe(e)}`));
    } finally {
      checkBtn.disabled = false;
    }
  });

  function wherePoint(): { latitude: number; longitude: number } | undefined {
    if (lat.value === "" || lng.value === "") return undefined;
    return { latitude: Number(lat.value), longitude: Number(lng.value) };
  }

  // ---- submit
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    hide(formError);
    const problems: string[] = [];
    if (!refPhone.value.trim()) problems.push("your phone number");
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(youthRef.value.trim())) problems.push("a youth reference (letters, digits, - and _ only)");
    const a = Number(age.value);
    if (age.value === "" || !Number.isInteger(a) || a < 0 || a > 24) problems.push("an age from 0 to 24");
    if (!county.value) problems.push("a county");
    if ((lat.value === "") !== (lng.value === "")) problems.push("both latitude and longitude, or neither");
    const cats = services.filter((s) => s.input.checked).map((s) => s.category as ServiceCategory);
    if (!bedTonight.input.checked && cats.length === 0) problems.push("at least one need (a bed tonight or a service)");
    const other = otherLangs.value.split(/[\s,]+/).filter(Boolean).map((s) => s.toLowerCase());
    if (other.some((c) => !/^[a-z]{2}$/.test(c))) problems.push("other languages as two-letter codes");
    const languages = [...new Set([...langs.filter((l) => l.input.checked).map((l) => l.code), ...other])];
    if (languages.length > 5) problems.push("at most 5 languages");
    if (problems.length) {
      show(formError, `Please give ${problems.join(", ")}.`);
      const first = problems[0];
      (first.startsWith("your phone") ? refPhone : first.startsWith("a youth") ? youthRef : first.startsWith("an age") ? age : county).focus();
      return;
    }
    const consented = consent.value() !== "no";
    const identifying =
      consented && (idName.value.trim() || idContact.value.trim() || idNotes.value.trim())
        ? { name: idName.value.trim(), contact: idContact.value.trim(), notes: idNotes.value.trim() }
        : undefined; // without consent nothing identifying leaves this page
    // The consent goes with the details (the service refuses them without it): who gave it, and
    // that the provider that accepts may see them; the service stamps when and until when.
    const consentRecord = identifying
      ? {
          giver: consent.value() === "guardian" ? Consent_Giver.GUARDIAN : Consent_Giver.YOUTH,
          scopes: [Consent_Scope.ACCEPTING_PROVIDER],
        }
      : undefined;
    const req: MessageInitShape<typeof CreateReferralRequestSchema> = {
      requestId: pendingRequestId,
      referrerContact: { name: refName.value.trim(), phone: refPhone.value.trim(), unit: refUnit.value.trim() },
      youth: {
        youthReference: youthRef.value.trim(),
        age: a,
        gender: Number(gender.value) as Gender,
        languages,
        identifying,
        consent: consentRecord,
      },
      countyFips: county.value,
      location: wherePoint(),
      needs: { placementTonight: bedTonight.input.checked, serviceCategories: cats },
      urgency: Number(urgency.value()) as Urgency,
      safety: {
        exploiterKnownInArea: exploiter.input.checked,
        runawayRisk: runaway.input.checked,
        recruitmentRisk: recruitment.input.checked,
      },
    };
    submitBtn.disabled = true;
    submitBtn.textContent = "Sending…";
    try {
      const res = await referrals.createReferral(req, CALL);
      pendingRequestId = requestId();
      // Ready for the next youth: nothing about this one stays in the form (the referrer and the
      // place stay, they are the terminal's own).
      const keep = [refName, refPhone, refUnit, county, lat, lng].map((c) => c.value);
      form.reset();
      [refName, refPhone, refUnit, county, lat, lng].forEach((c, i) => (c.value = keep[i]));
      syncConsent();
      replace(capacityBox);
      follow(res.referral!.id, res.referral);
    } catch (e) {
      show(formError, `The referral was not sent: ${describe(e)} Sending again is safe: it will not be duplicated.`);
    } finally {
      submitBtn.disabled = false;
      submitBtn.textContent = "Send referral";
    }
  });

  // ---- live status (polled: the API has no watch stream for referrers)
  let timer: number | undefined;
  let following = "";
  function follow(id: string, first?: ReferrerView): void {
    following = id;
    shown = undefined;
    sessionStorage.setItem("following", id);
    if (timer) clearTimeout(timer);
    statusBox.hidden = false;
    if (first && officer) renderOfficer(first, new Date());
    else replace(statusBox, h("h2", { id: "status-h" }, `Referral ${id}`), h("p", { role: "status" }, "Loading…"));
    statusBox.scrollIntoView({ block: "start" });
    (statusBox.querySelector("h2") as HTMLElement | null)?.focus();
    void poll(id);
  }

  let shown: GetReferralResponse | undefined; // what the status box shows now
  async function poll(id: string): Promise<void> {
    if (id !== following) return;
    let done = false;
    try {
      const res = await referrals.getReferral({ id }, CALL);
      if (id !== following) return;
      const same = shown !== undefined && equals(GetReferralResponseSchema, shown, res);
      shown = res;
      if (same) {
        // Unchanged: only the time of the check moves (nothing is re-announced to a screen reader).
        const hint = statusBox.querySelector(".checked");
        if (hint) hint.textContent = `Live: checked at ${clock(new Date())}, refreshed every few seconds.`;
      } else if (res.view.case === "referrerView") {
        renderOfficer(res.view.value, new Date());
      } else if (res.view.case === "referral") {
        await renderChildWelfare(res.view.value, new Date());
      }
      if (res.view.case === "referrerView") {
        const s = res.view.value.stage;
        done = s === ReferrerView_Stage.CONNECTED_TO_SERVICES || s === ReferrerView_Stage.CANCELLED;
      } else if (res.view.case === "referral") {
        done = CLOSED.has(res.view.value.status);
      }
      statusBox.querySelector(".poll-error")?.remove();
    } catch (e) {
      let err = statusBox.querySelector(".poll-error");
      if (!err) {
        err = h("p", { class: "banner error poll-error", role: "alert" });
        statusBox.append(err);
      }
      err.textContent = `Status not refreshed: ${describe(e)} Retrying…`;
    }
    void loadMine();
    if (!done) timer = window.setTimeout(() => void poll(id), POLL_MS);
  }

  function statusHeader(id: string, checked: Date, live: boolean): Node[] {
    return [
      h("h2", { id: "status-h", tabindex: -1 }, `Referral ${id}`),
      h("p", { class: "hint checked" }, live ? `Live: checked at ${clock(checked)}, refreshed every few seconds.` : `Checked at ${clock(checked)}.`),
    ];
  }

  function renderOfficer(v: ReferrerView, checked: Date): void {
    const live = v.stage !== ReferrerView_Stage.CONNECTED_TO_SERVICES && v.stage !== ReferrerView_Stage.CANCELLED;
    const body: Node[] = [];
    const stage = h("p", { class: `stage stage-${v.stage}`, "data-testid": "stage", role: "status" }, stageLabel(v.stage));
    body.push(stage);
    if (v.stage === ReferrerView_Stage.ROUTING) {
      body.push(h("p", {}, "The network is finding a specialized provider with room for this youth. Stay with the youth; this page updates by itself."));
    } else if ((v.stage === ReferrerView_Stage.READY_FOR_HANDOFF || v.stage === ReferrerView_Stage.WITH_CHILD_WELFARE) && v.handoff) {
      body.push(
        h("h3", {}, v.stage === ReferrerView_Stage.WITH_CHILD_WELFARE ? "Child welfare's on-call office has taken this referral" : "Bring the youth to"),
        h(
          "div",
          { class: "handoff", "data-testid": "handoff" },
          h("p", { class: "place-name" }, v.handoff.providerName || v.handoff.providerOrganizationId),
          h("p", {}, v.handoff.place),
          v.handoff.contactPhone ? h("p", {}, "Phone: ", h("a", { href: `tel:${v.handoff.contactPhone.replace(/[^+\d]/g, "")}` }, v.handoff.contactPhone)) : null,
        ),
        h("p", { class: "hint" }, "The hand-off is complete when the receiving provider confirms it has the youth."),
      );
    } else if (v.stage === ReferrerView_Stage.CONNECTED_TO_SERVICES) {
      body.push(h("p", {}, "The receiving provider has the youth. Nothing further about services is shown to law enforcement."));
    }
    replace(statusBox, ...statusHeader(v.id, checked, live), ...body);
  }

  const orgNames = new Map<string, string>();
  async function orgName(id: string): Promise<string> {
    if (!id) return "";
    if (!orgNames.has(id)) {
      try {
        orgNames.set(id, (await directory.getOrganization({ id }, CALL)).organization?.name || id);
      } catch {
        return id;
      }
    }
    return orgNames.get(id)!;
  }

  async function renderChildWelfare(r: Referral, checked: Date): Promise<void> {
    const ids = [...new Set([...r.offers.map((o) => o.providerOrganizationId), ...r.candidates.map((c) => c.providerOrganizationId)])];
    await Promise.all(ids.map(orgName));
    const nm = (id: string) => orgNames.get(id) ?? id;
    const offers = r.offers.length
      ? h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { "data-testid": "offers" },
            h("caption", {}, "Offers"),
            h("thead", {}, h("tr", {}, ["Provider", "State", "Offered", "Answer by", "Facility", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              r.offers.map((o) =>
                h("tr", {}, h("td", {}, nm(o.providerOrganizationId)), h("td", {}, offerLabel(o.state)), h("td", {}, clock(o.offeredTime)),
                  h("td", {}, clock(o.respondBy)), h("td", {}, o.facilityId || "—"), h("td", {}, answerLabel(o))),
              ),
            ),
          ),
        )
      : h("p", {}, "No offer yet.");
    const candidates = r.candidates.length
      ? h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { "data-testid": "candidates" },
            h("caption", {}, "Ranked candidates and why"),
            h("thead", {}, h("tr", {}, ["Rank", "Provider", "Facility / bed", "Distance", "Score", "Why"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              [...r.candidates].sort((a, b) => a.rank - b.rank).map((c) =>
                h("tr", {}, h("td", {}, String(c.rank)), h("td", {}, nm(c.providerOrganizationId)),
                  h("td", {}, c.facilityId ? `${c.facilityId} · ${bedLabel(c.bedType)}` : "—"), h("td", {}, km(c.distanceMeters)),
                  h("td", {}, String(c.score)), h("td", {}, c.explanation)),
              ),
            ),
          ),
        )
      : h("p", {}, "No candidates ranked yet.");
    replace(
      statusBox,
      ...statusHeader(r.id, checked, !CLOSED.has(r.status)),
      h("p", { class: "stage", "data-testid": "stage", role: "status" }, statusLabel(r.status)),
      dl([
        ["Youth reference", r.youth?.youthReference ?? ""],
        ["Answer due", r.acceptanceDeadline ? when(r.acceptanceDeadline) : "—"],
        ["Routing", r.routingExplanation || "—"],
        ["Rerouted", String(r.reroutes)],
        ["Bed", r.placementUnavailable ? "No bed could be held (placement unavailable)" : r.bedHoldId ? "Held" : "—"],
        ["Hand-off", r.handoff ? `${r.handoff.providerName || r.handoff.providerOrganizationId}, ${r.handoff.place}${r.handoff.contactPhone ? ", " + r.handoff.contactPhone : ""}` : "—"],
      ]),
      offers,
      candidates,
    );
  }

  // ---- this terminal's recent referrals
  let mineLoading = false;
  let mineSig = "";
  async function loadMine(): Promise<void> {
    if (mineLoading) return;
    mineLoading = true;
    try {
      const res = await referrals.listReferrals({ pageSize: 10 }, CALL);
      const sig = JSON.stringify(res.referrals.map((g) => [g.view.value?.id, g.view.case === "referral" ? g.view.value.status : g.view.value?.stage]));
      if (sig === mineSig) return; // unchanged: leave the list (and a click on it) alone
      mineSig = sig;
      const rows = res.referrals.map((g) => {
        const id = g.view.case ? g.view.value.id : "";
        const what = g.view.case === "referrerView" ? stageLabel(g.view.value.stage)
          : g.view.case === "referral" ? statusLabel(g.view.value.status) : "";
        return h("li", {}, h("button", { type: "button", class: "link", onclick: () => follow(id) }, id), ` — ${what}`);
      });
      replace(
        mine,
        h("h2", { id: "mine-h" }, officer ? "Referrals from this agency" : "Referrals in this office's region"),
        rows.length ? h("ul", { class: "plain" }, rows) : h("p", {}, "None yet."),
      );
    } catch (e) {
      mineSig = "";
      replace(mine, h("h2", { id: "mine-h" }, "Recent referrals"), h("p", { class: "banner error", role: "alert" }, describe(e)));
    } finally {
      mineLoading = false;
    }
  }
  void loadMine();
  const again = sessionStorage.getItem("following");
  if (again) follow(again);

  function capacityTable(results: FacilityAvailability[], youthAge: number, haveAge: boolean): Node {
    if (!results.length) return h("p", {}, "No routable bed facility found in this area.");
    const now = Date.now();
    return h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { "data-testid": "capacity" },
        h("caption", {}, "Beds nearby, nearest first"),
        h("thead", {}, h("tr", {}, ["Facility", "Type", "Ages", "Beds free", "Count confirmed"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          results.map((fa) => {
            const f = fa.facility!;
            const fits = !haveAge || (youthAge >= f.minimumAge && youthAge <= f.maximumAge);
            const known = fa.beds.filter((b) => b.status === AvailabilityStatus.KNOWN);
            const free = known.reduce((n, b) => n + b.availableBeds, 0);
            const freshest = fa.beds.map((b) => b.confirmedTime).filter(Boolean).sort((a, b) => Number(b!.seconds - a!.seconds))[0];
            const stale = fa.beds.some((b) => b.status !== AvailabilityStatus.KNOWN);
            return h(
              "tr",
              {},
              h("th", { scope: "row" }, f.name, fa.distanceMeters ? h("span", { class: "sub" }, ` ${km(fa.distanceMeters)}`) : null,
                f.csecSpecialized ? h("span", { class: "tag" }, "CSEC-specialized") : null),
              h("td", {}, placementLabel(f.placementType)),
              h("td", {}, `${f.minimumAge}–${f.maximumAge}`, !fits ? h("span", { class: "tag warn" }, "outside this age") : null),
              h("td", {}, known.length ? String(free) : "unknown", " ", fa.beds.map((b) => h("span", { class: "sub" }, `${bedLabel(b.bedType)}: ${b.status === AvailabilityStatus.KNOWN ? b.availableBeds : "?"} `))),
              h("td", { class: stale ? "stale" : "" }, freshest ? `${ago(freshest, now)} (${clock(freshest)})` : "never", stale ? ` (${fa.beds.filter((b) => b.status !== AvailabilityStatus.KNOWN).map((b) => `${bedLabel(b.bedType)}: ${availabilityLabel(b.status)}`).join("; ")})` : ""),
            );
          }),
        ),
      ),
      haveAge ? h("p", { class: "hint" }, "The age check above happened on this page; the age was not sent.") : null,
    );
  }
  void countyCentroids;
}

function show(el: HTMLElement, text: string): void {
  el.textContent = text;
  el.hidden = false;
  el.scrollIntoView({ block: "nearest" });
}
function hide(el: HTMLElement): void {
  el.hidden = true;
}
