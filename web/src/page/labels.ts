// Human words for the API's enums and times.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import { AvailabilityStatus, BedType, PlacementType } from "../../gen/safeharbor/beds/v1/beds_pb.js";
import { Gender, ServiceCategory } from "../../gen/safeharbor/directory/v1/directory_pb.js";
import { OfferState, ReasonCode, ReferralStatus, ReferrerView_Stage, Urgency } from "../../gen/safeharbor/referrals/v1/referrals_pb.js";

export const GENDERS: [Gender, string][] = [
  [Gender.UNSPECIFIED, "Not stated"],
  [Gender.FEMALE, "Female"],
  [Gender.MALE, "Male"],
  [Gender.NONBINARY, "Nonbinary"],
];

// Non-residential services a referral can ask for (residential needs are "a bed tonight").
export const SERVICES: [ServiceCategory, string][] = [
  [ServiceCategory.CSEC_ADVOCACY, "CSEC advocate / mentor"],
  [ServiceCategory.MENTAL_HEALTH, "Mental health"],
  [ServiceCategory.SUBSTANCE_USE_TREATMENT, "Substance use treatment"],
  [ServiceCategory.MEDICAL_FORENSIC_EXAM, "Medical / forensic exam"],
  [ServiceCategory.LEGAL_ADVOCACY, "Legal advocacy"],
  [ServiceCategory.EDUCATION_EMPLOYMENT, "Education and employment"],
  [ServiceCategory.FAMILY_SUPPORT, "Family support"],
];

export const LANGUAGES: [string, string][] = [
  ["en", "English"],
  ["es", "Spanish"],
  ["vi", "Vietnamese"],
  ["zh", "Chinese"],
  ["ru", "Russian"],
  ["uk", "Ukrainian"],
  ["so", "Somali"],
  ["ko", "Korean"],
  ["tl", "Tagalog"],
  ["ar", "Arabic"],
];

export function label<T extends number>(table: [T, string][], v: T): string {
  return table.find(([k]) => k === v)?.[1] ?? String(v);
}
export const genderLabel = (g: Gender) => label(GENDERS, g);
export const serviceLabel = (c: ServiceCategory) => label(SERVICES, c);
export const languageLabel = (code: string) => LANGUAGES.find(([c]) => c === code)?.[1] ?? code;

export const URGENCY: [Urgency, string][] = [
  [Urgency.ROUTINE, "Routine"],
  [Urgency.URGENT, "Urgent"],
  [Urgency.EMERGENCY, "Emergency"],
];

const STATUS: [ReferralStatus, string][] = [
  [ReferralStatus.REQUESTED, "Requested: finding candidates"],
  [ReferralStatus.OFFERED, "Offered"],
  [ReferralStatus.ACCEPTED, "Accepted"],
  [ReferralStatus.HANDED_OFF, "Handed off"],
  [ReferralStatus.IN_PROGRESS, "Services in progress"],
  [ReferralStatus.COMPLETED, "Completed"],
  [ReferralStatus.YOUTH_DECLINED, "Youth declined services"],
  [ReferralStatus.COULD_NOT_CONTACT, "Could not contact"],
  [ReferralStatus.CANCELLED, "Cancelled"],
  [ReferralStatus.ESCALATED, "Escalated to child welfare on call"],
];
export const statusLabel = (s: ReferralStatus) => label(STATUS, s);
export const CLOSED = new Set([
  ReferralStatus.COMPLETED,
  ReferralStatus.YOUTH_DECLINED,
  ReferralStatus.COULD_NOT_CONTACT,
  ReferralStatus.CANCELLED,
]);

const OFFER: [OfferState, string][] = [
  [OfferState.PENDING, "Waiting for an answer"],
  [OfferState.ACCEPTED, "Accepted"],
  [OfferState.DECLINED, "Declined"],
  [OfferState.EXPIRED, "No answer by the deadline"],
  [OfferState.WITHDRAWN, "Withdrawn"],
  [OfferState.WAITLISTED, "Waitlisted"],
];
export const offerLabel = (s: OfferState) => label(OFFER, s);

// Why a provider declines an offer: every ReasonCode but "completed" (an outcome, not a reason).
// "Other" needs a few words saying what.
export const DECLINE_CODES: [ReasonCode, string][] = [
  [ReasonCode.AT_CAPACITY, "At capacity"],
  [ReasonCode.NOT_ELIGIBLE, "Not eligible"],
  [ReasonCode.SAFETY_CONCERN, "Safety concern"],
  [ReasonCode.YOUTH_DECLINED, "Youth declined"],
  [ReasonCode.COULD_NOT_CONTACT, "Could not contact the youth"],
  [ReasonCode.REFERRED_ELSEWHERE, "Referred elsewhere"],
  [ReasonCode.OTHER, "Other (say what in the details)"],
];
const REASONS: [ReasonCode, string][] = [...DECLINE_CODES, [ReasonCode.COMPLETED, "Completed"]];
export const reasonLabel = (c: ReasonCode) => label(REASONS, c);

// A provider's answer on an offer, in words: the decline's code and its text, or the waitlist time.
export function answerLabel(o: { declineCode: ReasonCode; declineReason: string; waitlistedUntil?: Timestamp }): string {
  const parts = [o.declineCode ? reasonLabel(o.declineCode) : "", o.waitlistedUntil ? `Waitlist until ${clock(o.waitlistedUntil)}` : "", o.declineReason];
  return parts.filter(Boolean).join(": ");
}

// The value of a datetime-local input for `d`, in the page's time zone ("2026-12-01T07:00").
export function localInput(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

const STAGE: [ReferrerView_Stage, string][] = [
  [ReferrerView_Stage.ROUTING, "Finding a provider"],
  [ReferrerView_Stage.READY_FOR_HANDOFF, "Ready for hand-off"],
  [ReferrerView_Stage.CONNECTED_TO_SERVICES, "Connected to services"],
  [ReferrerView_Stage.WITH_CHILD_WELFARE, "With child welfare's on-call office"],
  [ReferrerView_Stage.CANCELLED, "Cancelled"],
];
export const stageLabel = (s: ReferrerView_Stage) => label(STAGE, s);

const BED: [BedType, string][] = [
  [BedType.GENERAL, "General"],
  [BedType.FEMALE, "Female"],
  [BedType.MALE, "Male"],
  [BedType.GENDER_AFFIRMING, "Gender-affirming"],
  [BedType.CRISIS_STABILIZATION, "Crisis stabilization"],
];
export const bedLabel = (b: BedType) => label(BED, b);

const PLACEMENT: [PlacementType, string][] = [
  [PlacementType.CRISIS_RESIDENTIAL_CENTER, "Crisis residential center"],
  [PlacementType.HOPE_CENTER, "HOPE center"],
  [PlacementType.RECEIVING_CENTER, "Receiving center"],
  [PlacementType.SPECIALIZED_FOSTER_HOME, "Specialized foster home"],
  [PlacementType.THERAPEUTIC_GROUP_HOME, "Therapeutic group home"],
  [PlacementType.EMERGENCY_YOUTH_SHELTER, "Emergency youth shelter"],
];
export const placementLabel = (p: PlacementType) => label(PLACEMENT, p);

export const availabilityLabel = (s: AvailabilityStatus) =>
  s === AvailabilityStatus.KNOWN ? "Confirmed" : s === AvailabilityStatus.STALE ? "Stale: call to check" : "Never reported";

export function date(t: Timestamp | undefined): Date | undefined {
  return t ? timestampDate(t) : undefined;
}

export function clock(t: Timestamp | Date | undefined): string {
  const d = t instanceof Date ? t : date(t);
  return d ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

export function when(t: Timestamp | undefined): string {
  const d = date(t);
  return d ? d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "";
}

// "4 min ago", "3 h ago", "2 days ago".
export function ago(t: Timestamp | undefined, now = Date.now()): string {
  const d = date(t);
  if (!d) return "never";
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

// "12 min 05 s left" / "deadline passed".
export function timeLeft(t: Timestamp | undefined, now = Date.now()): { text: string; overdue: boolean } {
  const d = date(t);
  if (!d) return { text: "no deadline", overdue: false };
  const s = Math.round((d.getTime() - now) / 1000);
  if (s <= 0) return { text: "Deadline passed", overdue: true };
  const m = Math.floor(s / 60);
  return { text: `${m} min ${String(s % 60).padStart(2, "0")} s left to answer`, overdue: false };
}

export const km = (m: bigint | number) => `${(Number(m) / 1000).toFixed(1)} km`;
