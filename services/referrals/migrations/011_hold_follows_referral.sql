-- Issue 14, the hold follows the referral. Accepting a placement extends its bed hold to the
-- hand-off deadline through this outbox: the row is written in the accepting transaction and
-- deleted once the beds service answered for good, so a crash or a beds outage between the
-- commit and the call loses no extension. Outages are retried (attempts, next_attempt) a bounded
-- number of times.
CREATE TABLE hold_extensions (
  hold_id      text PRIMARY KEY,
  referral_id  text NOT NULL REFERENCES referrals (id),
  expire_time  timestamptz NOT NULL,
  attempts     integer NOT NULL DEFAULT 0,
  next_attempt timestamptz NOT NULL,
  created      timestamptz NOT NULL
);
CREATE INDEX hold_extensions_due ON hold_extensions (next_attempt);

-- The hand-off deadline of an accepted referral (acceptance + --handoff_deadline_s), and whether
-- its passing without a hand-off was told to the county (once, across replicas).
ALTER TABLE referrals
  ADD COLUMN handoff_deadline timestamptz,
  ADD COLUMN handoff_overdue_noted boolean NOT NULL DEFAULT false;
CREATE INDEX referrals_handoff_due ON referrals (handoff_deadline) WHERE status = 3;
