-- Issue 14, advocate response (services/referrals/advocate.h). An urgent or emergency advocacy
-- row (needs exactly CSEC advocacy) has a response target: advocate_due, its creation plus
-- --advocate_response_target_s, written in the intake's transaction (NULL for every other row).
-- advocate_arrived: when the accepting provider recorded its advocate's arrival.
-- advocate_missed: the target passed with no arrival and the county was told; set once, by the
-- replica that marked the row under its lock.
ALTER TABLE referrals
  ADD COLUMN advocate_due timestamptz,
  ADD COLUMN advocate_arrived timestamptz,
  ADD COLUMN advocate_missed boolean NOT NULL DEFAULT false;
-- The timer's claim: open rows with a target, no arrival, not yet marked (a marked row leaves the
-- index, so it is never scanned again). The predicate's statuses are the closed ones (completed,
-- youth declined, could not contact, cancelled), spelled as the queries spell them.
CREATE INDEX referrals_advocate_due ON referrals (advocate_due)
  WHERE advocate_arrived IS NULL AND NOT advocate_missed AND status NOT IN (6, 7, 8, 9);
-- The overdue gauge: open rows with a target and no arrival, marked or not.
CREATE INDEX referrals_advocate_open ON referrals (advocate_due)
  WHERE advocate_arrived IS NULL AND status NOT IN (6, 7, 8, 9);
