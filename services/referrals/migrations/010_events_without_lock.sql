-- Watch events without a global lock (issue 13). Appends took one advisory lock until commit so
-- that sequence numbers committed in order; that serialized every offer, accept and decline of
-- every replica. Now a writer numbers its event from a sequence (CACHE 1: values are handed out
-- in increasing order across sessions) after taking a shared advisory lock keyed by the
-- sequence's last value: a marker, held until it commits or rolls back, saying "my number is
-- above this one". Readers read only up to referral_events_horizon(): the sequence's last value,
-- lowered to the smallest marker of a writer still in flight. Every event at or below it has
-- committed (and is visible to a statement that starts afterwards) or rolled back for good, so a
-- reader resuming from any sequence number it was given never misses one that commits later.
-- Writers never wait for each other. Every replica must run a version that writes this way.
CREATE SEQUENCE referral_events_seq AS bigint CACHE 1 OWNED BY referral_events.seq;
SELECT CASE WHEN m > 0 THEN setval('referral_events_seq', m, true)
            ELSE setval('referral_events_seq', 1, false) END
FROM (SELECT greatest((SELECT coalesce(max(seq), 0) FROM referral_events),
                      (SELECT coalesce(max(through_seq), 0) FROM watch_pruned
                       WHERE events_table = 'referral_events')) AS m) last;

-- The safe horizon. The sequence is read before the locks: a writer whose number is at or below
-- the value read took its marker before taking the number, so it is among the locks read next
-- unless it has ended. Markers are the granted shared advisory locks on one bigint key in this
-- database (nothing else takes a shared advisory lock here); any other would only lower the
-- horizon for as long as it is held.
CREATE FUNCTION referral_events_horizon() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  last_seq bigint;
  lowest_marker bigint;
BEGIN
  last_seq := coalesce(pg_sequence_last_value('referral_events_seq'), 0);
  SELECT min((l.classid::bigint << 32) | l.objid::bigint) INTO lowest_marker
  FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock' AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
  RETURN least(last_seq, coalesce(lowest_marker, last_seq));
END $$;

-- Provider load without a hot row (issue 13). Every offer's transaction added to its provider's
-- one counter row and held that row's lock until commit, so offers to the same provider (all the
-- referrals near one well-ranked provider) committed one at a time. The counter is now spread
-- over up to 16 rows per provider, each transaction adding to the row of its own connection's
-- shard (its backend's pid modulo 16): transactions on different connections rarely meet, and a
-- transaction still locks its rows in provider order (no deadlock). A shard may go below zero
-- (a decrement on another connection than its increment); the sum is exact. provider_load is
-- now the view of the sums, as ranking and the tests read it, never below zero.
ALTER TABLE provider_load RENAME TO provider_load_shards;
ALTER TABLE provider_load_shards ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE provider_load_shards DROP CONSTRAINT provider_load_pkey;
ALTER TABLE provider_load_shards ADD PRIMARY KEY (provider_org, shard);
CREATE VIEW provider_load AS
  SELECT provider_org, greatest(sum(open_offers), 0)::integer AS open_offers
  FROM provider_load_shards GROUP BY provider_org;

CREATE OR REPLACE FUNCTION provider_load_add(org text, delta integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF delta = 0 THEN RETURN; END IF;
  INSERT INTO provider_load_shards AS l (provider_org, shard, open_offers)
    VALUES (org, (pg_backend_pid() % 16)::smallint, delta)
    ON CONFLICT (provider_org, shard) DO UPDATE SET open_offers = l.open_offers + excluded.open_offers;
END $$;
