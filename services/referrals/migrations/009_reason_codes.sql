-- Coded reasons and the waitlist answer (issue 14).
-- offers.decline_code: why the offer was declined (ReasonCode; 0 none). The free text beside it
-- stays in decline_reason. offers.waitlisted_until: the time a provider gave with "waitlist
-- until" (kept after the offer is accepted or lapses, so the report can count waitlist answers).
-- referrals.outcome_code: how a closed referral ended (ReasonCode), for the auditor's report.
ALTER TABLE offers
  ADD COLUMN decline_code smallint NOT NULL DEFAULT 0,
  ADD COLUMN waitlisted_until timestamptz;
ALTER TABLE referrals
  ADD COLUMN outcome_code smallint NOT NULL DEFAULT 0;

-- Declines before codes existed were free text: counted as "other" (8).
UPDATE offers SET decline_code = 8 WHERE state = 3 AND decline_code = 0;
-- Outcomes before codes existed: the outcome's own code (completed 7, youth declined 4, could
-- not contact 5).
UPDATE referrals SET outcome_code = CASE status WHEN 6 THEN 7 WHEN 7 THEN 4 WHEN 8 THEN 5 END
  WHERE status IN (6, 7, 8) AND outcome_code = 0;

-- Waitlisted offers (state 6) lapse at respond_by: the timer finds them by it; a provider's
-- ListReferrals finds its waitlisted referrals beside its pending and accepted ones.
CREATE INDEX offers_waitlist_due ON offers (respond_by) WHERE state = 6;
CREATE INDEX offers_provider_waitlisted ON offers (provider_org, referral_id) WHERE state = 6;
