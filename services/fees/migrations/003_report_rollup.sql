-- Report totals per day, jurisdiction, court, transaction kind and account, kept in the writing
-- transaction by a statement trigger on the append-only ledger, so that the reports read a few
-- rows per day instead of every entry (a report over a million payments stays fast). Derived
-- data: the ledger remains the record, and the tests check that the two agree. Rows are spread
-- over 32 shards by assessment so that concurrent payments rarely wait for each other.
CREATE TABLE ledger_daily_totals (
  effective_date date NOT NULL,
  jurisdiction   text NOT NULL,
  court_org      text NOT NULL,
  kind           text NOT NULL,
  account        text NOT NULL,
  recipient_kind smallint NOT NULL,
  shard          smallint NOT NULL,
  amount_cents   bigint NOT NULL,
  entries        bigint NOT NULL,
  PRIMARY KEY (effective_date, jurisdiction, court_org, kind, account, recipient_kind, shard)
);

CREATE FUNCTION roll_up_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ledger_daily_totals AS d (effective_date, jurisdiction, court_org, kind, account,
                                        recipient_kind, shard, amount_cents, entries)
  SELECT t.effective_date, t.jurisdiction, t.court_org, t.kind, n.account, n.recipient_kind,
         (abs(hashtext(t.assessment_id)) % 32)::smallint, sum(n.amount_cents), count(*)
  FROM new_entries n JOIN ledger_txns t ON t.id = n.txn_id
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  ORDER BY 1, 2, 3, 4, 5, 6, 7  -- One lock order for every writer: no deadlocks.
  ON CONFLICT (effective_date, jurisdiction, court_org, kind, account, recipient_kind, shard)
  DO UPDATE SET amount_cents = d.amount_cents + EXCLUDED.amount_cents,
                entries = d.entries + EXCLUDED.entries;
  RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_roll_up AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION roll_up_entries();

INSERT INTO ledger_daily_totals (effective_date, jurisdiction, court_org, kind, account,
                                 recipient_kind, shard, amount_cents, entries)
SELECT t.effective_date, t.jurisdiction, t.court_org, t.kind, e.account, e.recipient_kind,
       (abs(hashtext(t.assessment_id)) % 32)::smallint, sum(e.amount_cents), count(*)
FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id
GROUP BY 1, 2, 3, 4, 5, 6, 7;
