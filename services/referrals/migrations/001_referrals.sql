-- Referrals. The body is the Referral proto WITHOUT identifying details; those are sealed
-- (AES-256-GCM, bound to the referral id) in identity_sealed and opened only for the provider
-- that accepted. Transitions and the audit log are append-only for every role.
CREATE TABLE referrals (
  id                  text PRIMARY KEY,
  referrer_org        text NOT NULL,
  referrer_role       text NOT NULL,
  county_fips         text NOT NULL,
  status              smallint NOT NULL,
  urgency             smallint NOT NULL,
  needs_placement     boolean NOT NULL,
  accepted_provider   text,
  acceptance_deadline timestamptz,
  body                bytea NOT NULL,
  identity_sealed     bytea,
  revision            bigint NOT NULL DEFAULT 1,
  create_time         timestamptz NOT NULL,
  update_time         timestamptz NOT NULL
);
CREATE INDEX referrals_referrer ON referrals (referrer_org, create_time);
CREATE INDEX referrals_county ON referrals (county_fips, create_time);
-- Durable timers: offers past their deadline, and referrals still waiting to be routed.
CREATE INDEX referrals_offer_deadline ON referrals (acceptance_deadline) WHERE status = 2;
CREATE INDEX referrals_unrouted ON referrals (create_time) WHERE status = 1;

CREATE TABLE offers (
  referral_id    text NOT NULL REFERENCES referrals (id),
  provider_org   text NOT NULL,
  service_id     text NOT NULL,
  state          smallint NOT NULL,
  offered_time   timestamptz NOT NULL,
  respond_by     timestamptz NOT NULL,
  decline_reason text NOT NULL DEFAULT '',
  PRIMARY KEY (referral_id, provider_org, service_id)
);
CREATE INDEX offers_provider ON offers (provider_org, state);

CREATE TABLE transitions (
  id          bigserial PRIMARY KEY,
  referral_id text NOT NULL REFERENCES referrals (id),
  from_status smallint NOT NULL,
  to_status   smallint NOT NULL,
  actor_org   text NOT NULL,
  actor_role  text NOT NULL,
  at          timestamptz NOT NULL,
  reason      text NOT NULL DEFAULT ''
);
CREATE INDEX transitions_referral ON transitions (referral_id, id);

-- Every read or change of a referral's youth data: who, which organization, when, what.
CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL,
  actor_org   text NOT NULL,
  actor_role  text NOT NULL,
  action      text NOT NULL,
  referral_id text NOT NULL,
  detail      text NOT NULL DEFAULT ''
);
CREATE INDEX audit_referral ON audit_log (referral_id, id);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER transitions_append_only BEFORE UPDATE OR DELETE ON transitions
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER transitions_no_truncate BEFORE TRUNCATE ON transitions
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
