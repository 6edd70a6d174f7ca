-- Crash-safety for calls to the beds service.
-- pending_hold: a HoldBed about to be made for this referral ("request_id|facility|bed_type"),
-- written before the call, so a hold taken just before a crash is found again and released.
-- routing_failures: routing attempts that failed for another reason than an outage; after a few
-- the referral is escalated rather than retried forever.
ALTER TABLE referrals
  ADD COLUMN pending_hold text,
  ADD COLUMN routing_failures integer NOT NULL DEFAULT 0;

-- Holds to give back to the beds service, written in the transaction that let them go and
-- deleted once the beds service confirms: a crash or a beds outage never leaks a bed.
CREATE TABLE hold_releases (
  hold_id     text PRIMARY KEY,
  referral_id text NOT NULL REFERENCES referrals (id),
  created     timestamptz NOT NULL
);

-- A provider's referrals (ListReferrals) from its active offers.
CREATE INDEX offers_provider_active ON offers (provider_org, referral_id) WHERE state IN (1, 2);
