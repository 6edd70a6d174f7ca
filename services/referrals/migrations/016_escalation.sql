-- Issue 14, escalation keeps the loop closed (branch escalation). An escalated referral that
-- needed a placement is watched for a bed routing could offer: `bed_watch_after` is when it is
-- checked next (NULL: not watched; set when it is escalated, cleared when it leaves ESCALATED,
-- pushed out by each check, so each row is checked at most every --escalation_bed_check_s across
-- replicas, claimed with SKIP LOCKED), `bed_seen` whether the last check found one (the on-call
-- office is told once per appearance: when a check finds one and the last did not).
ALTER TABLE referrals
  ADD COLUMN bed_watch_after timestamptz,
  ADD COLUMN bed_seen boolean NOT NULL DEFAULT false;
CREATE INDEX referrals_bed_watch ON referrals (bed_watch_after)
  WHERE bed_watch_after IS NOT NULL;
-- Referrals escalated before this version that needed a placement are watched from now on.
UPDATE referrals SET bed_watch_after = now() WHERE status = 10 AND needs_placement;
