-- Issue 14, mend14: the purge leaves no free text behind, and a waitlisted placement's winner
-- gets a bed hold of its own.
--
-- A provider accepting a placement offer from the waitlist had its hold let go when the referral
-- went back to routing. Accepting now queues a fresh hold at the offer's facility in this outbox,
-- in the accepting transaction; the timers take it from the beds service after the commit
-- (idempotent on request_id), then extend it to the hand-off deadline like any accepted hold. No
-- free bed (or retries run out) marks the referral bed_hold_lost and alerts; the accept stands.
CREATE TABLE hold_requests (
  referral_id  text PRIMARY KEY REFERENCES referrals (id),
  request_id   text NOT NULL,
  provider_org text NOT NULL,      -- the provider that accepted (the hold is for its facility)
  for_org      text NOT NULL,      -- the referring agency (the beds service's cap on holds)
  facility_id  text NOT NULL,
  bed_type     smallint NOT NULL,
  expire_time  timestamptz NOT NULL,  -- the hand-off deadline
  attempts     integer NOT NULL DEFAULT 0,
  next_attempt timestamptz NOT NULL,
  created      timestamptz NOT NULL
);
CREATE INDEX hold_requests_due ON hold_requests (next_attempt);

-- Transitions and the audit log stay append-only, with one exception: the purge of a referral's
-- identifying details (services/referrals/retention.h) blanks the free text of its rows — a
-- cancellation's reason, which the service copied there until this migration (it now keeps the
-- text in the referral's body, purged with it). Only that text column, only to '', only in a
-- transaction that named the referral as the one being purged (safeharbor.purging_referral, set
-- transaction-locally by the purge, which also writes the "identity_purged" audit row). Every
-- other change is refused as before.
CREATE FUNCTION transitions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.reason = ''
     AND OLD.referral_id = current_setting('safeharbor.purging_referral', true)
     AND (NEW.id, NEW.referral_id, NEW.from_status, NEW.to_status, NEW.actor_org,
          NEW.actor_role, NEW.at)
         IS NOT DISTINCT FROM (OLD.id, OLD.referral_id, OLD.from_status, OLD.to_status,
                               OLD.actor_org, OLD.actor_role, OLD.at) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.detail = ''
     AND OLD.referral_id = current_setting('safeharbor.purging_referral', true)
     AND (NEW.id, NEW.at, NEW.actor_org, NEW.actor_role, NEW.action, NEW.referral_id)
         IS NOT DISTINCT FROM (OLD.id, OLD.at, OLD.actor_org, OLD.actor_role, OLD.action,
                               OLD.referral_id) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER transitions_append_only ON transitions;
CREATE TRIGGER transitions_append_only BEFORE UPDATE OR DELETE ON transitions
  FOR EACH ROW EXECUTE FUNCTION transitions_append_only();
DROP TRIGGER audit_append_only ON audit_log;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
