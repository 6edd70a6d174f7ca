-- Webhooks (issue 15): an organization's endpoints, and an outbox of deliveries to them.
--
-- Subscriptions. The signing secret is sealed (AES-256-GCM under the youth-data keys, bound to
-- the subscription id) and shown only in the answer that created or rotated it. A child-welfare
-- subscription keeps its office's counties (read from the directory when it was created): the
-- escalations it hears of.
CREATE TABLE webhook_subscriptions (
  id            text PRIMARY KEY,
  org_id        text NOT NULL,
  role          text NOT NULL,
  url           text NOT NULL,
  events        integer[] NOT NULL,
  counties      text[] NOT NULL DEFAULT '{}',
  secret_sealed bytea NOT NULL,
  created       timestamptz NOT NULL,
  rotated       timestamptz NOT NULL,
  deleted       boolean NOT NULL DEFAULT false
);
CREATE INDEX webhook_subscriptions_org ON webhook_subscriptions (org_id) WHERE NOT deleted;

-- The feed: written by triggers in the transaction of the change itself (a watch event for a
-- provider, a transition to ESCALATED), so that no committed change is missed and no rolled-back
-- one is told; only for organizations with a subscription. The webhook worker turns feed rows
-- into deliveries and deletes them, in one transaction (claimed FOR UPDATE SKIP LOCKED).
CREATE TABLE webhook_feed (
  id          bigserial PRIMARY KEY,
  kind        text NOT NULL,      -- 'provider_event' | 'escalated'
  event_seq   bigint,             -- referral_events.seq (provider_event)
  referral_id text NOT NULL,
  org_id      text,               -- the provider (provider_event)
  county_fips text,               -- the referral's county (escalated)
  ref         bigint,             -- transitions.id (escalated)
  created     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION webhook_feed_provider_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM webhook_subscriptions
             WHERE org_id = NEW.provider_org AND NOT deleted) THEN
    INSERT INTO webhook_feed (kind, event_seq, referral_id, org_id)
      VALUES ('provider_event', NEW.seq, NEW.referral_id, NEW.provider_org);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER referral_events_webhook_feed AFTER INSERT ON referral_events
  FOR EACH ROW EXECUTE FUNCTION webhook_feed_provider_event();

CREATE FUNCTION webhook_feed_escalated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  county text;
BEGIN
  SELECT county_fips INTO county FROM referrals WHERE id = NEW.referral_id;
  IF EXISTS (SELECT 1 FROM webhook_subscriptions
             WHERE NOT deleted AND county = ANY (counties)) THEN
    INSERT INTO webhook_feed (kind, referral_id, county_fips, ref)
      VALUES ('escalated', NEW.referral_id, county, NEW.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER transitions_webhook_feed AFTER INSERT ON transitions
  FOR EACH ROW WHEN (NEW.to_status = 10) EXECUTE FUNCTION webhook_feed_escalated();

-- Deliveries: one per (subscription, event). state 0 pending, 1 delivered, 2 dead letter,
-- 3 obsolete (a reminder whose condition no longer holds: the offer was answered, the youth
-- handed off). A worker claims a due one with a lease (FOR UPDATE SKIP LOCKED); a worker killed
-- mid-delivery leaves a lease that expires, and another delivers again (at least once).
CREATE TABLE webhook_deliveries (
  id              bigserial PRIMARY KEY,
  subscription_id text NOT NULL REFERENCES webhook_subscriptions (id),
  org_id          text NOT NULL,
  event_id        text NOT NULL,
  event_type      integer NOT NULL,
  referral_id     text NOT NULL,
  deadline        timestamptz,
  occurred        timestamptz NOT NULL,
  guard           text NOT NULL DEFAULT '',  -- '', 'offer_pending', 'awaiting_handoff'
  state           smallint NOT NULL DEFAULT 0,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt    timestamptz NOT NULL,
  retry_until     timestamptz NOT NULL,
  lease_until     timestamptz,
  last_error      text NOT NULL DEFAULT '',
  delivered       timestamptz,
  created         timestamptz NOT NULL,
  UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt) WHERE state = 0;
CREATE INDEX webhook_deliveries_sub ON webhook_deliveries (subscription_id) WHERE state = 0;
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (org_id, id) WHERE state = 2;
