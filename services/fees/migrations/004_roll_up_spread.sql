-- The report roll-up's rows are spread over their 32 shards by ledger transaction instead of by
-- assessment (issue 13). Spread by assessment, two payments on different assessments in the
-- same shard waited for each other's commit on every account both touch (the recipients of a
-- jurisdiction are the same for all its assessments); consecutive ledger transactions now land
-- in different shards, so concurrent payments rarely meet. Reports sum every shard: rows already
-- written stay valid where they are.
CREATE OR REPLACE FUNCTION roll_up_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ledger_daily_totals AS d (effective_date, jurisdiction, court_org, kind, account,
                                        recipient_kind, shard, amount_cents, entries)
  SELECT t.effective_date, t.jurisdiction, t.court_org, t.kind, n.account, n.recipient_kind,
         (t.id % 32)::smallint, sum(n.amount_cents), count(*)
  FROM new_entries n JOIN ledger_txns t ON t.id = n.txn_id
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  ORDER BY 1, 2, 3, 4, 5, 6, 7  -- One lock order for every writer: no deadlocks.
  ON CONFLICT (effective_date, jurisdiction, court_org, kind, account, recipient_kind, shard)
  DO UPDATE SET amount_cents = d.amount_cents + EXCLUDED.amount_cents,
                entries = d.entries + EXCLUDED.entries;
  RETURN NULL;
END $$;
