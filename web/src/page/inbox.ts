// The provider inbox: referrals offered to this organization arriving live (WatchReferrals,
// resumed from its cursor after a reconnect), the time left to answer, accept, decline with a
// coded reason or answer "waitlist until" a time, confirm the hand-off, record the outcome; and
// its facilities' census in a few clicks.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import type { BedAvailability, Facility } from "../../gen/safeharbor/beds/v1/beds_pb.js";
import { AvailabilityStatus } from "../../gen/safeharbor/beds/v1/beds_pb.js";
import {
  type IdentifyingDetails,
  type Offer,
  OfferState,
  ReasonCode,
  type Referral,
  ReferralStatus,
} from "../../gen/safeharbor/referrals/v1/referrals_pb.js";
import type { TerminalInfo } from "../shared/terminal.js";
import { beds, CALL, describe, referrals, requestId } from "./api.js";
import { dl, field, h, radios, replace } from "./dom.js";
import {
  ago,
  answerLabel,
  availabilityLabel,
  bedLabel,
  CLOSED,
  clock,
  DECLINE_CODES,
  genderLabel,
  languageLabel,
  localInput,
  offerLabel,
  serviceLabel,
  statusLabel,
  timeLeft,
  URGENCY,
  label,
  when,
} from "./labels.js";

// "Waitlist until": after now, at most this far ahead (the referral service's limit).
const WAITLIST_MAX_MS = 24 * 3600 * 1000;

interface Item {
  referral: Referral;
  identifying?: IdentifyingDetails; // only after this provider accepted (never from the stream)
  error?: string;
  busy?: boolean;
}

export function inbox(main: HTMLElement, info: TerminalInfo): void {
  const org = info.organizationId;
  const items = new Map<string, Item>();
  const facilityNames = new Map<string, string>(); // this provider's own facilities
  const cursorKey = `inbox-cursor:${org}`;
  const live = h("p", { class: "live", "data-testid": "live", role: "status" }, "Connecting for live updates…");
  const announce = h("div", { class: "visually-hidden", "aria-live": "assertive" });
  const list = h("div", { class: "offers", "data-testid": "inbox" });
  const census = h("section", { class: "card", "aria-labelledby": "census-h" });
  replace(
    main,
    h("h1", {}, "Provider inbox"),
    h("p", { class: "lede" }, "Referrals offered to your organization appear here as they arrive. Services are voluntary: a youth declining is an ordinary outcome."),
    live,
    announce,
    h("section", { "aria-labelledby": "offers-h" }, h("h2", { id: "offers-h" }, "Referrals"), list),
    census,
  );

  // ---- merging: the newest view of each referral wins
  function upsert(r: Referral, fromStream: boolean): void {
    const cur = items.get(r.id);
    if (cur && updated(cur.referral) > updated(r)) return;
    const fresh = !cur && fromStream && myOffer(r)?.state === OfferState.PENDING;
    if (cur) cur.referral = r; // in place: an action waiting on this item keeps seeing it
    else items.set(r.id, { referral: r });
    if (fresh) announce.textContent = `New referral offered: youth ${r.youth?.youthReference ?? ""}, age ${r.youth?.age ?? ""}.`;
    render();
  }

  function updated(x?: Referral): number {
    return x?.updateTime ? Number(x.updateTime.seconds) * 1e3 + x.updateTime.nanos / 1e6 : 0;
  }

  function myOffer(r: Referral): Offer | undefined {
    // The provider view carries only this provider's offers; the latest one counts.
    return [...r.offers].reverse().find((o) => o.providerOrganizationId === org) ?? r.offers[r.offers.length - 1];
  }

  function acceptedByMe(r: Referral): boolean {
    return !!r.acceptedTime && r.handoff?.providerOrganizationId === org;
  }

  // ---- the live stream, resumed from its cursor
  let cursor = sessionStorage.getItem(cursorKey) ?? "";
  let backoff = 1000;
  let listed = false;
  async function watch(): Promise<void> {
    for (;;) {
      const ctl = new AbortController();
      try {
        const resumeFrom = cursor;
        const stream = referrals.watchReferrals({ cursor }, { signal: ctl.signal, timeoutMs: 0 })[Symbol.asyncIterator]();
        const first = stream.next(); // opens the stream before the list is read: nothing falls between
        live.textContent = resumeFrom ? `Live: connected, resumed after update ${resumeFrom}.` : "Live: connected, waiting for offers.";
        live.className = "live ok";
        // The current state, once per page (and whenever there is no cursor to resume from).
        if (!listed || !resumeFrom) listed = await loadList();
        for (let next = await first; !next.done; next = await stream.next()) {
          const ev = next.value;
          backoff = 1000;
          if (ev.referral) upsert(ev.referral, true);
          refreshCensusSoon(); // holds and placements change the counts
          cursor = ev.cursor;
          sessionStorage.setItem(cursorKey, cursor);
          live.textContent = `Live: connected, last update ${clock(new Date())}.`;
          live.className = "live ok";
        }
        throw new ConnectError("the stream ended", Code.Unavailable);
      } catch (e) {
        ctl.abort();
        const err = ConnectError.from(e);
        // A cursor this service does not know, or one older than its replay horizon: start over
        // from the current state.
        if ((err.code === Code.InvalidArgument || err.code === Code.FailedPrecondition) && cursor) {
          cursor = "";
          sessionStorage.removeItem(cursorKey);
        }
        const wait = backoff;
        backoff = Math.min(backoff * 2, 15000);
        live.textContent = `Live updates interrupted: ${describe(e)} Reconnecting in ${Math.round(wait / 1000)} s${cursor ? `, resuming after update ${cursor}` : ""}.`;
        live.className = "live down";
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  async function loadList(): Promise<boolean> {
    try {
      const res = await referrals.listReferrals({ pageSize: 50 }, CALL);
      for (const g of res.referrals) if (g.view.case === "referral") upsert(g.view.value, false);
      return true;
    } catch (e) {
      live.textContent = `Referrals not loaded: ${describe(e)}`;
      live.className = "live down";
      return false;
    }
  }

  // ---- actions
  async function act(id: string, what: () => Promise<Referral | undefined>, reloadAfter = false): Promise<void> {
    const it = items.get(id);
    if (!it || it.busy) return;
    it.busy = true;
    it.error = undefined;
    render();
    try {
      const r = await what();
      if (r) {
        const identifying = r.youth?.identifying;
        if (updated(r) >= updated(it.referral)) it.referral = r;
        if (identifying && acceptedByMe(r)) it.identifying = identifying;
      } else if (reloadAfter) {
        try {
          const g = await referrals.getReferral({ id }, CALL);
          if (g.view.case === "referral") it.referral = g.view.value;
        } catch {
          /* declined: it may no longer be readable by this provider */
        }
      }
    } catch (e) {
      it.error = describe(e);
    } finally {
      it.busy = false;
      render();
      document.getElementById(`card-${id}`)?.querySelector<HTMLElement>("h3")?.focus();
    }
  }

  const acceptIds = new Map<string, string>(); // one request id per referral: a retry is the same accept
  function card(it: Item): HTMLElement {
    const r = it.referral;
    const offer = myOffer(r);
    const mine = acceptedByMe(r);
    const y = r.youth;
    const pending = r.status === ReferralStatus.OFFERED && offer?.state === OfferState.PENDING;
    // "Waitlist until": still this provider's to accept or decline until then.
    const waitlisted = !mine && offer?.state === OfferState.WAITLISTED;
    const parts: (Node | null)[] = [];
    const urg = label(URGENCY, r.urgency);
    parts.push(
      h("h3", { tabindex: -1 }, `Youth ${y?.youthReference ?? "?"}, ${y?.age ?? "?"}`, h("span", { class: `tag urgency-${r.urgency}` }, urg)),
      h("p", { class: "stage", "data-testid": "status" }, mine || !offer ? statusLabel(r.status) : offer.state === OfferState.PENDING ? statusLabel(r.status) : `${offerLabel(offer.state)}`),
    );
    if (pending && offer) {
      const left = timeLeft(offer.respondBy);
      parts.push(h("p", { class: `countdown${left.overdue ? " overdue" : ""}`, "data-respond-by": offer.respondBy ? String(Number(offer.respondBy.seconds) * 1000) : "" }, left.text, offer.respondBy ? ` (by ${clock(offer.respondBy)})` : ""));
    }
    parts.push(
      dl([
        ["Referral", r.id],
        ["Gender", genderLabel(y?.gender ?? 0)],
        ["Languages", (y?.languages ?? []).map(languageLabel).join(", ") || "—"],
        ["Needs", [r.needs?.placementTonight ? "a bed tonight" : "", ...(r.needs?.serviceCategories ?? []).map(serviceLabel)].filter(Boolean).join(", ") || "—"],
        ["Safety", [r.safety?.exploiterKnownInArea ? "exploiter known in the youth's area" : "", r.safety?.runawayRisk ? "runaway risk" : "", r.safety?.recruitmentRisk ? "recruitment risk" : ""].filter(Boolean).join(", ") || "none flagged"],
        ["Bed held at", offer?.facilityId ? facilityNames.get(offer.facilityId) ?? offer.facilityId : "—"],
        ["Referred by", [r.referrerContact?.name, r.referrerContact?.unit, r.referrerContact?.phone].filter(Boolean).join(", ") || r.referrerOrganizationId],
        ["Received", when(offer?.offeredTime ?? r.createTime)],
      ]),
    );
    if (mine) {
      if (it.identifying && (it.identifying.name || it.identifying.contact || it.identifying.notes)) {
        parts.push(
          h("div", { class: "identifying-box", "data-testid": "identifying" },
            h("h4", {}, "Identifying details (shared with consent, for your organization only)"),
            dl([["Name", it.identifying.name || "—"], ["Contact", it.identifying.contact || "—"], ["Notes", it.identifying.notes || "—"]])),
        );
      } else if (!it.identifying && !CLOSED.has(r.status)) {
        parts.push(h("button", { type: "button", class: "secondary", onclick: () => act(r.id, async () => {
          const g = await referrals.getReferral({ id: r.id }, CALL);
          if (g.view.case !== "referral") return undefined;
          it.identifying = g.view.value.youth?.identifying ?? { name: "", contact: "", notes: "" } as IdentifyingDetails;
          return g.view.value;
        }) }, "Show identifying details (recorded in the audit log)"));
      } else if (it.identifying) {
        parts.push(h("p", { class: "hint" }, "No identifying details were shared."));
      }
    }
    if (it.error) parts.push(h("p", { class: "banner error", role: "alert" }, it.error));
    const busy = !!it.busy;
    if (waitlisted && offer) {
      parts.push(h("p", { class: "hint", "data-testid": "waitlisted" }, `You answered "waitlist until ${clock(offer.respondBy)}": the referral is offered to others meanwhile, and you may still accept or decline until then.`));
    }
    if (pending || waitlisted) {
      if (!acceptIds.has(r.id)) acceptIds.set(r.id, requestId());
      parts.push(
        h("div", { class: "actions" },
          h("button", { type: "button", disabled: busy, onclick: () => act(r.id, async () => (await referrals.acceptReferral({ id: r.id, requestId: acceptIds.get(r.id)! }, CALL)).referral) }, "Accept referral"),
        ),
        declineForm(it, busy),
        pending ? waitlistForm(it, busy) : null,
      );
    } else if (mine && r.status === ReferralStatus.ACCEPTED) {
      parts.push(
        r.handoff ? h("p", {}, `Hand-off at: ${r.handoff.place}`) : null,
        h("div", { class: "actions" },
          h("button", { type: "button", disabled: busy, onclick: () => act(r.id, async () => (await referrals.confirmHandoff({ id: r.id }, CALL)).referral) }, "Confirm hand-off: the youth is here")),
      );
    } else if (mine && (r.status === ReferralStatus.HANDED_OFF || r.status === ReferralStatus.IN_PROGRESS)) {
      const outcome = radios(`outcome-${r.id}`, "Outcome", [
        [String(ReferralStatus.COMPLETED), "Services completed"],
        [String(ReferralStatus.YOUTH_DECLINED), "Youth declined services"],
        [String(ReferralStatus.COULD_NOT_CONTACT), "Could not contact the youth"],
      ], "");
      parts.push(
        r.status === ReferralStatus.HANDED_OFF
          ? h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", disabled: busy, onclick: () => act(r.id, async () => (await referrals.startServices({ id: r.id }, CALL)).referral) }, "Services started"))
          : null,
        h("div", { class: "outcome" }, outcome.set,
          h("button", { type: "button", disabled: busy, onclick: () => {
            const v = Number(outcome.value());
            if (!v) {
              it.error = "Choose an outcome first.";
              render();
              return;
            }
            void act(r.id, async () => (await referrals.recordOutcome({ id: r.id, outcome: v as ReferralStatus }, CALL)).referral);
          } }, "Record outcome")),
      );
    } else if (!mine && offer && offer.state !== OfferState.PENDING) {
      const answer = answerLabel(offer);
      parts.push(h("p", { class: "hint" }, offer.state === OfferState.DECLINED ? `You declined: ${answer}.` : `This referral is no longer offered to you${answer ? ` (your answer: ${answer})` : ""}.`));
    }
    const closed = CLOSED.has(r.status) || (!mine && !pending && !waitlisted);
    return h("article", { class: `card offer${pending ? " pending" : ""}${closed ? " closed" : ""}`, id: `card-${r.id}`, "data-referral": r.id, "aria-busy": busy ? "true" : "false" }, parts);
  }

  // Decline with a coded reason (counted in the auditor's report); "Other" needs a few words.
  function declineForm(it: Item, busy: boolean): HTMLElement {
    const id = it.referral.id;
    const code = h("select", { name: "decline_code" }, DECLINE_CODES.map(([v, text]) => h("option", { value: v }, text)));
    const detail = h("input", { name: "decline_detail", maxlength: 500, autocomplete: "off" });
    return h("details", { class: "decline" },
      h("summary", {}, "Decline…"),
      field("Reason", code),
      field("Details (optional; required for Other; no youth names)", detail, "Shown to your organization and child welfare only, never to the officer. Removed with the youth's identifying details."),
      h("button", { type: "button", class: "danger", disabled: busy, onclick: () => {
        const reasonCode = Number(code.value) as ReasonCode;
        if (reasonCode === ReasonCode.OTHER && !detail.value.trim()) {
          it.error = "Say in the details why you decline (the reason is Other).";
          render();
          return;
        }
        void act(id, async () => {
          await referrals.declineReferral({ id, reasonCode, reason: detail.value.trim() }, CALL);
          return undefined;
        }, true);
      } }, "Decline referral"));
  }

  // "Waitlist until": no bed now, one at a time the provider gives (at most 24 hours ahead).
  function waitlistForm(it: Item, busy: boolean): HTMLElement {
    const id = it.referral.id;
    const now = Date.now();
    const until = h("input", {
      type: "datetime-local",
      name: "waitlist_until",
      min: localInput(new Date(now + 60000)),
      max: localInput(new Date(now + WAITLIST_MAX_MS)),
      value: localInput(new Date(now + 2 * 3600 * 1000)),
      required: true,
    });
    const note = h("input", { name: "waitlist_note", maxlength: 500, autocomplete: "off" });
    return h("details", { class: "waitlist" },
      h("summary", {}, "Waitlist until…"),
      field("A bed frees at", until, "At most 24 hours from now. The referral is offered to others meanwhile; you may still accept until then."),
      field("Note (optional, no youth names)", note),
      h("button", { type: "button", class: "secondary", disabled: busy, onclick: () => {
        const t = new Date(until.value).getTime();
        if (!until.value || Number.isNaN(t) || t <= Date.now() || t > Date.now() + WAITLIST_MAX_MS) {
          it.error = "Give a time after now and at most 24 hours ahead.";
          render();
          return;
        }
        void act(id, async () => (await referrals.waitlistReferral({ id, until: timestampFromDate(new Date(t)), reason: note.value.trim() }, CALL)).referral);
      } }, "Waitlist referral"));
  }

  function order(a: Item, b: Item): number {
    const rank = (it: Item) => {
      const r = it.referral;
      if (r.status === ReferralStatus.OFFERED && myOffer(r)?.state === OfferState.PENDING) return 0;
      if (acceptedByMe(r) && !CLOSED.has(r.status)) return 1;
      return 2;
    };
    return rank(a) - rank(b) || Number((b.referral.updateTime?.seconds ?? 0n) - (a.referral.updateTime?.seconds ?? 0n));
  }

  function render(): void {
    const focused = document.activeElement;
    const keepId = focused instanceof HTMLElement ? focused.closest("article")?.id : undefined;
    const all = [...items.values()].sort(order);
    // Keep a card the person is typing in (the decline reason) untouched.
    const cards = all.map((it) => {
      const old = document.getElementById(`card-${it.referral.id}`);
      if (old && keepId === old.id && old.contains(focused) && (focused instanceof HTMLInputElement || focused instanceof HTMLSelectElement) && !it.busy) {
        return old;
      }
      return card(it);
    });
    if (!cards.length) replace(list, h("p", {}, "No referrals offered to your organization right now."));
    else replace(list, ...cards);
  }
  render();

  setInterval(() => {
    for (const el of list.querySelectorAll<HTMLElement>(".countdown")) {
      const t = Number(el.dataset.respondBy);
      if (!t) continue;
      const left = timeLeft(timestampFromDate(new Date(t)));
      el.firstChild!.textContent = left.text;
      el.classList.toggle("overdue", left.overdue);
    }
  }, 1000);

  void watch();
  void loadCensus();

  // ---- census
  let censusTimer: number | undefined;
  function refreshCensusSoon(): void {
    if (censusTimer) clearTimeout(censusTimer);
    censusTimer = window.setTimeout(() => {
      // Never under the hands of someone correcting the counts.
      if (!census.contains(document.activeElement)) void loadCensus(true);
    }, 1500);
  }

  async function loadCensus(quiet = false): Promise<void> {
    if (!quiet) replace(census, h("h2", { id: "census-h" }, "Census of your facilities"), h("p", { role: "status" }, "Loading facilities…"));
    try {
      const fl = await beds.listFacilities({ organizationId: org, pageSize: 50 }, CALL);
      const details = await Promise.all(fl.facilities.map((f) => beds.getFacility({ id: f.id }, CALL)));
      const known = facilityNames.size;
      for (const f of fl.facilities) facilityNames.set(f.id, f.name);
      if (facilityNames.size !== known) render();
      replace(
        census,
        h("h2", { id: "census-h" }, "Census of your facilities"),
        h("p", { class: "hint" }, "Correct the counts if needed and report them: each report is confirmed as of now. A count older than the staleness window is treated as unknown."),
        details.length ? details.map((d) => censusForm(d.facility!, d.beds)) : h("p", {}, "Your organization has no bed facility in the network."),
        h("button", { type: "button", class: "secondary", onclick: () => void loadCensus() }, "Reload the counts"),
      );
    } catch (e) {
      replace(census, h("h2", { id: "census-h" }, "Census of your facilities"), h("p", { class: "banner error", role: "alert" }, `Facilities not loaded: ${describe(e)}`),
        h("button", { type: "button", class: "secondary", onclick: () => void loadCensus() }, "Try again"));
    }
  }

  function censusForm(f: Facility, avail: BedAvailability[]): HTMLElement {
    const msg = h("p", { role: "status", class: "census-msg" });
    const rows = f.bedTypes.map((bt) => {
      const a = avail.find((x) => x.bedType === bt.bedType);
      const occ = h("input", { type: "number", min: 0, max: bt.licensedCapacity, step: 1, value: a?.occupied ?? 0, inputmode: "numeric", name: `occupied-${bt.bedType}` });
      const oos = h("input", { type: "number", min: 0, max: bt.licensedCapacity, step: 1, value: a?.outOfService ?? 0, inputmode: "numeric", name: `oos-${bt.bedType}` });
      const lbl = bedLabel(bt.bedType);
      occ.setAttribute("aria-label", `${lbl} beds occupied`);
      oos.setAttribute("aria-label", `${lbl} beds out of service`);
      return {
        bt,
        occ,
        oos,
        row: h("tr", {},
          h("th", { scope: "row" }, lbl),
          h("td", {}, String(bt.licensedCapacity)),
          h("td", {}, occ),
          h("td", {}, oos),
          h("td", {}, String(a?.held ?? 0)),
          h("td", {}, a && a.status === AvailabilityStatus.KNOWN ? String(a.availableBeds) : "unknown"),
          h("td", { class: a?.status === AvailabilityStatus.KNOWN ? "" : "stale" }, a ? `${availabilityLabel(a.status)}, ${ago(a.confirmedTime)}` : "never reported"),
        ),
      };
    });
    const btn = h("button", { type: "submit" }, "Report census (confirmed now)");
    const form = h("form", { class: "census", "aria-label": `Census of ${f.name}`, novalidate: true },
      h("h3", {}, f.name),
      h("div", { class: "scroll" },
        h("table", {},
          h("thead", {}, h("tr", {}, ["Bed type", "Licensed", "Occupied", "Out of service", "Held", "Free", "Last confirmed"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows.map((r) => r.row)))),
      h("div", { class: "actions" }, btn), msg);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      btn.disabled = true;
      msg.className = "census-msg";
      msg.textContent = "Reporting…";
      try {
        const res = await beds.reportCensus({
          requestId: requestId(),
          facilityId: f.id,
          confirmedTime: timestampFromDate(new Date()),
          entries: rows.map((r) => ({ bedType: r.bt.bedType, occupied: Number(r.occ.value), outOfService: Number(r.oos.value) })),
        }, CALL);
        const free = res.beds.reduce((n, b) => n + b.availableBeds, 0);
        msg.className = "census-msg ok";
        msg.textContent = `Census reported at ${clock(new Date())}: ${free} bed${free === 1 ? "" : "s"} free.`;
        setTimeout(() => void loadCensus().then(() => {
          const again = census.querySelector(`form[aria-label="Census of ${CSS.escape(f.name)}"] .census-msg`);
          if (again) {
            again.className = "census-msg ok";
            again.textContent = `Census reported at ${clock(new Date())}: ${free} bed${free === 1 ? "" : "s"} free.`;
          }
        }), 0);
      } catch (e) {
        msg.className = "census-msg error";
        msg.textContent = `Census not reported: ${describe(e)}`;
      } finally {
        btn.disabled = false;
      }
    });
    return form;
  }
}
