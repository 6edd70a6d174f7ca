-- Webhooks, bounded (issue 15, after review): authority read live from the directory, fair and
-- time-boxed claims, a cap enforced in one statement, bounded replay, retention.
--
-- The directory's word on a subscriber, refreshed by the webhook worker (never copied once at
-- creation): when it last vouched for the organization, whether the organization is still
-- listed as the kind it subscribed as (inactive otherwise), and (child welfare) the counties it
-- serves now, written into `counties`. A delivery is claimed only while that word is fresh.
ALTER TABLE webhook_subscriptions
  ADD COLUMN standing_checked timestamptz,
  ADD COLUMN inactive boolean NOT NULL DEFAULT false,
  ADD COLUMN claim_turn bigint;  -- round-robin: the subscription served longest ago goes first
CREATE SEQUENCE webhook_claim_turns;

-- The per-organization cap on subscriptions, counted in one row that a create increments only
-- while below the cap (INSERT … ON CONFLICT DO UPDATE … WHERE: one statement, safe against
-- concurrent creates) and a delete decrements.
CREATE TABLE webhook_org_limits (
  org_id        text PRIMARY KEY,
  subscriptions integer NOT NULL
);
INSERT INTO webhook_org_limits (org_id, subscriptions)
  SELECT org_id, count(*) FROM webhook_subscriptions WHERE NOT deleted GROUP BY org_id;

-- Dead letters replayed per organization in the current window (ReplayWebhookDeadLetters is
-- rate-limited per organization across replicas).
CREATE TABLE webhook_replay_budget (
  org_id       text PRIMARY KEY,
  window_start timestamptz NOT NULL,
  replayed     integer NOT NULL
);

-- Retention: finished deliveries by when they finished (delivered; dead or obsolete: their last
-- next_attempt).
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries
  ((coalesce(delivered, next_attempt))) WHERE state <> 0;
