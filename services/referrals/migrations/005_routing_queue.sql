-- Routing by priority: emergency before urgent before routine, the longest in the system first
-- within each. The claim walks this index in that order; route_after (when the referral may next
-- be claimed) is a key column so that leased and retrying referrals are skipped in the index.
DROP INDEX referrals_unrouted;
CREATE INDEX referrals_routing_queue ON referrals (urgency DESC, create_time, route_after)
  WHERE status = 1;

-- Provider load as a counter: the open offers (pending or accepted, of a referral offered,
-- accepted, handed off or in progress) per provider, kept by triggers in the transaction that
-- makes, answers, lapses or closes them, so ranking reads one row per provider instead of
-- counting offers. Each trigger changes one factor of "offer open AND referral open" with the
-- other as it is now, so the count stays exact whatever the order of the statements.
CREATE TABLE provider_load (
  provider_org text PRIMARY KEY,
  open_offers  integer NOT NULL DEFAULT 0
);

CREATE FUNCTION provider_load_add(org text, delta integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF delta > 0 THEN
    INSERT INTO provider_load AS l (provider_org, open_offers) VALUES (org, delta)
      ON CONFLICT (provider_org) DO UPDATE SET open_offers = l.open_offers + excluded.open_offers;
  ELSIF delta < 0 THEN
    -- Never below zero: the count ranks providers, it must not refuse a referral's change.
    UPDATE provider_load SET open_offers = greatest(open_offers + delta, 0)
      WHERE provider_org = org;
  END IF;
END $$;

CREATE FUNCTION offers_count_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  was integer := 0;
  now_open integer := 0;
  referral_open boolean;
  row_ offers%ROWTYPE;
BEGIN
  IF TG_OP = 'DELETE' THEN row_ := OLD; ELSE row_ := NEW; END IF;
  SELECT status IN (2, 3, 4, 5) INTO referral_open FROM referrals WHERE id = row_.referral_id;
  IF NOT coalesce(referral_open, false) THEN RETURN NULL; END IF;
  IF TG_OP <> 'INSERT' AND OLD.state IN (1, 2) THEN was := 1; END IF;
  IF TG_OP <> 'DELETE' AND NEW.state IN (1, 2) THEN now_open := 1; END IF;
  PERFORM provider_load_add(row_.provider_org, now_open - was);
  RETURN NULL;
END $$;

CREATE FUNCTION referrals_count_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  delta integer;
  o record;
BEGIN
  delta := (NEW.status IN (2, 3, 4, 5))::integer - (OLD.status IN (2, 3, 4, 5))::integer;
  IF delta = 0 THEN RETURN NULL; END IF;
  -- In provider order (bytes, as the service writes offers): transactions lock counters alike.
  FOR o IN SELECT provider_org, count(*)::integer AS n FROM offers
           WHERE referral_id = NEW.id AND state IN (1, 2)
           GROUP BY provider_org ORDER BY provider_org COLLATE "C" LOOP
    PERFORM provider_load_add(o.provider_org, delta * o.n);
  END LOOP;
  RETURN NULL;
END $$;

-- Created before the backfill: writers wait for this migration, none is missed.
CREATE TRIGGER offers_load_insert AFTER INSERT ON offers
  FOR EACH ROW EXECUTE FUNCTION offers_count_load();
CREATE TRIGGER offers_load_update AFTER UPDATE OF state ON offers
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION offers_count_load();
CREATE TRIGGER offers_load_delete AFTER DELETE ON offers
  FOR EACH ROW EXECUTE FUNCTION offers_count_load();
CREATE TRIGGER referrals_load AFTER UPDATE OF status ON referrals
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION referrals_count_load();

INSERT INTO provider_load (provider_org, open_offers)
SELECT o.provider_org, count(*) FROM offers o JOIN referrals r ON r.id = o.referral_id
WHERE o.state IN (1, 2) AND r.status IN (2, 3, 4, 5)
GROUP BY o.provider_org;
