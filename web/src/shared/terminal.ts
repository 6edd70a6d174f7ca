// Which terminal screen each role gets, and the only RPCs its gateway passes on. The services
// check every call's role and organization themselves; this list only keeps the gateway from
// offering the browser more than its screens use (it never widens what the certificate may do).
export const ROLES = ["law_enforcement", "child_welfare", "provider"] as const;
export type Role = (typeof ROLES)[number];

const D = "safeharbor.directory.v1.DirectoryService";
const B = "safeharbor.beds.v1.BedsService";
const R = "safeharbor.referrals.v1.ReferralService";

const COMMON = [`${D}/GetOrganization`, `${D}/ListCounties`];
const INTAKE = [
  `${B}/SearchAvailability`,
  `${R}/CreateReferral`,
  `${R}/GetReferral`,
  `${R}/ListReferrals`,
];
const INBOX = [
  `${R}/ListReferrals`,
  `${R}/GetReferral`,
  `${R}/WatchReferrals`,
  `${R}/AcceptReferral`,
  `${R}/DeclineReferral`,
  `${R}/WaitlistReferral`,
  `${R}/ConfirmHandoff`,
  `${R}/StartServices`,
  `${R}/RecordOutcome`,
  `${B}/ListFacilities`,
  `${B}/GetFacility`,
  `${B}/ReportCensus`,
];

export function methodsFor(role: Role): string[] {
  return [...COMMON, ...(role === "provider" ? INBOX : INTAKE)];
}

export function screenFor(role: Role): "intake" | "inbox" {
  return role === "provider" ? "inbox" : "intake";
}

export const ROLE_LABELS: Record<Role, string> = {
  law_enforcement: "Law enforcement",
  child_welfare: "Child welfare intake",
  provider: "Service provider",
};

// The identity in the gateway's certificate.
export interface Identity {
  organizationId: string;
  role: Role;
  spiffeId: string;
  subject: string;
  notAfter: string;
  fingerprint256: string;
}

// What the gateway tells the page about itself (GET /terminal.json).
export interface TerminalInfo extends Identity {
  services: { directory: string; beds: string; referrals: string };
}
