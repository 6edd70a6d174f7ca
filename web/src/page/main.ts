// The terminal's page: who it acts for (from the gateway's certificate), then the screen for
// that role: intake (law enforcement, child welfare) or the provider inbox.
import { ROLE_LABELS, screenFor, type TerminalInfo } from "../shared/terminal.js";
import { CALL, describe, directory } from "./api.js";
import { h, replace } from "./dom.js";
import { inbox } from "./inbox.js";
import { intake } from "./intake.js";

async function start(): Promise<void> {
  const header = document.getElementById("terminal")!;
  const main = document.getElementById("main")!;
  let info: TerminalInfo;
  try {
    const res = await fetch("/terminal.json", { cache: "no-store", signal: AbortSignal.timeout(10000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    info = (await res.json()) as TerminalInfo;
  } catch (e) {
    replace(header, h("p", { class: "who" }, "SafeHarbor Network terminal"));
    replace(
      main,
      h("div", { class: "banner error", role: "alert" },
        `This terminal's gateway is not answering (${(e as Error).message}). Check that it is running, then reload.`),
    );
    return;
  }
  const name = h("strong", { class: "org-name" }, info.organizationId);
  replace(
    header,
    h("p", { class: "who" }, "This terminal acts for ", name, ` · ${ROLE_LABELS[info.role]}`),
    h(
      "p",
      { class: "identity" },
      "Identity: ",
      h("code", {}, info.spiffeId),
      ` — the organization's certificate is held by this terminal's gateway (valid until ${new Date(info.notAfter).toLocaleDateString()}); every call is made as this organization.`,
    ),
  );
  document.title = `${screenFor(info.role) === "inbox" ? "Provider inbox" : "Intake"} · ${info.organizationId} · SafeHarbor`;
  directory
    .getOrganization({ id: info.organizationId }, CALL)
    .then((r) => {
      if (r.organization?.name) {
        name.textContent = r.organization.name;
        document.title = document.title.replace(info.organizationId, r.organization.name);
      }
    })
    .catch((e) => {
      header.append(h("p", { class: "banner warn", role: "status" }, `Organization name not loaded: ${describe(e)}`));
    });
  if (screenFor(info.role) === "inbox") inbox(main, info);
  else intake(main, info);
}

void start();
