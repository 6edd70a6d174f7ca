-- Durable routing state. route_after: when a REQUESTED referral may next be claimed for routing
-- (claims push it 30 s ahead, so a replica that dies mid-routing hands it to another).
-- placement_pending: the hand-off is recorded but the beds service has not yet confirmed the
-- placement (retried until it answers).
ALTER TABLE referrals
  ADD COLUMN route_after timestamptz,
  ADD COLUMN placement_pending boolean NOT NULL DEFAULT false,
  ADD COLUMN accepted_time timestamptz,
  ADD COLUMN reroutes integer NOT NULL DEFAULT 0,
  ADD COLUMN placement_unavailable boolean NOT NULL DEFAULT false;
DROP INDEX referrals_unrouted;
CREATE INDEX referrals_unrouted ON referrals (route_after) WHERE status = 1;
CREATE INDEX referrals_placement_pending ON referrals (update_time) WHERE placement_pending;

-- WatchReferrals: one row per provider a change concerns; seq is the resume cursor. Rows are
-- appended under an advisory lock in the changing transaction, so sequence numbers commit in
-- order and a watcher never skips one. The payload is that provider's view (never identifying).
CREATE TABLE referral_events (
  seq          bigint PRIMARY KEY,
  provider_org text NOT NULL,
  referral_id  text NOT NULL REFERENCES referrals (id),
  at           timestamptz NOT NULL,
  payload      bytea NOT NULL
);
