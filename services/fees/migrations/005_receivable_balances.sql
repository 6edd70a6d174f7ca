-- Each assessment's outstanding balance (its receivable account), kept in the writing
-- transaction by the ledger's statement trigger (issue 13). A payment read the balance by
-- summing every entry of the account, work that grew with each payment on the assessment; it
-- now reads one row. Derived data like ledger_daily_totals: the ledger remains the record, and
-- the tests check after each one that the two agree. Payments on one assessment already wait
-- for each other (its row is locked), so the balance row adds no waiting. The roll-up into
-- ledger_daily_totals finds each entry's transaction by its key (see below).
-- Writers (other replicas still running the old code) wait here until this migration commits:
-- an entry written under the old trigger after the backfill's snapshot would be in neither.
LOCK TABLE ledger_entries IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE receivable_balances (
  account      text PRIMARY KEY,
  amount_cents bigint NOT NULL,
  entries      bigint NOT NULL
);

CREATE OR REPLACE FUNCTION roll_up_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ledger_daily_totals AS d (effective_date, jurisdiction, court_org, kind, account,
                                        recipient_kind, shard, amount_cents, entries)
  SELECT t.effective_date, t.jurisdiction, t.court_org, t.kind, n.account, n.recipient_kind,
         (t.id % 32)::smallint, sum(n.amount_cents), count(*)
  -- Each entry's transaction by its key (OFFSET 0: never flattened into a join the cached
  -- plan could make a hash join over the whole growing ledger_txns, planned once when it was
  -- small: the cost of a payment grew with every payment before).
  FROM new_entries n CROSS JOIN LATERAL (
    SELECT * FROM ledger_txns WHERE id = n.txn_id OFFSET 0) t
  GROUP BY 1, 2, 3, 4, 5, 6, 7
  ORDER BY 1, 2, 3, 4, 5, 6, 7  -- One lock order for every writer: no deadlocks.
  ON CONFLICT (effective_date, jurisdiction, court_org, kind, account, recipient_kind, shard)
  DO UPDATE SET amount_cents = d.amount_cents + EXCLUDED.amount_cents,
                entries = d.entries + EXCLUDED.entries;
  INSERT INTO receivable_balances AS b (account, amount_cents, entries)
  SELECT n.account, sum(n.amount_cents), count(*)
  FROM new_entries n WHERE n.account LIKE 'receivable:%'
  GROUP BY 1 ORDER BY 1
  ON CONFLICT (account) DO UPDATE SET amount_cents = b.amount_cents + EXCLUDED.amount_cents,
                                      entries = b.entries + EXCLUDED.entries;
  RETURN NULL;
END $$;

INSERT INTO receivable_balances (account, amount_cents, entries)
SELECT account, sum(amount_cents), count(*) FROM ledger_entries
WHERE account LIKE 'receivable:%' GROUP BY account;

-- Only the ledger's trigger changes a balance (its ON CONFLICT update runs at trigger depth 2);
-- the application's own role cannot update, delete or truncate one, as with the ledger.
CREATE FUNCTION refuse_balance_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'receivable balances are kept by the ledger: % on % refused', TG_OP,
    TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER receivable_balances_by_ledger_only BEFORE UPDATE OR DELETE ON receivable_balances
  FOR EACH ROW EXECUTE FUNCTION refuse_balance_change();
CREATE TRIGGER receivable_balances_no_truncate BEFORE TRUNCATE ON receivable_balances
  FOR EACH STATEMENT EXECUTE FUNCTION refuse_balance_change();
