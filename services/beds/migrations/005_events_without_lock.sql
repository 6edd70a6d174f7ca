-- Availability events without a global lock (issue 13): the scheme of the referral service's
-- watch events (its migration 010). A writer takes a shared advisory lock keyed by the event
-- sequence's last value (a marker: "my number is above this one", held until it ends) and then
-- its number; readers read only up to availability_events_horizon(), the sequence's last value
-- lowered to the smallest marker still held. Changes to different bed types no longer wait for
-- each other to commit. Every replica must run a version that writes this way.
ALTER SEQUENCE availability_events_seq_seq CACHE 1;

-- The sequence is read before the locks: a writer whose number is at or below the value read
-- took its marker before its number, so it is among the locks read next unless it has ended.
CREATE FUNCTION availability_events_horizon() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  last_seq bigint;
  lowest_marker bigint;
BEGIN
  last_seq := coalesce(pg_sequence_last_value('availability_events_seq_seq'), 0);
  SELECT min((l.classid::bigint << 32) | l.objid::bigint) INTO lowest_marker
  FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock' AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
  RETURN least(last_seq, coalesce(lowest_marker, last_seq));
END $$;
