-- Fee disbursement: schedules and policies as versioned data; assessments, payments and a
-- double-entry ledger that is append-only for every database role (triggers refuse UPDATE,
-- DELETE and TRUNCATE) and in which every transaction sums to zero (checked at commit).
CREATE TABLE fee_schedules (
  statute        smallint NOT NULL,
  effective_from date NOT NULL,
  citation       text NOT NULL,
  fee_type       text NOT NULL,
  tier0_cents    bigint NOT NULL CHECK (tier0_cents > 0),
  tier1_cents    bigint NOT NULL CHECK (tier1_cents > 0),
  tier2_cents    bigint NOT NULL CHECK (tier2_cents > 0),
  PRIMARY KEY (statute, effective_from)
);

CREATE TABLE disbursement_policies (
  id             text PRIMARY KEY,
  fee_type       text NOT NULL,
  jurisdiction   text NOT NULL DEFAULT '',
  effective_from date NOT NULL,
  shares         jsonb NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (fee_type, jurisdiction, effective_from)
);

CREATE TABLE assessments (
  id              text PRIMARY KEY,
  court_org       text NOT NULL,
  case_number     text NOT NULL,
  jurisdiction    text NOT NULL,
  statute         smallint NOT NULL,
  fee_type        text NOT NULL,
  priors          integer NOT NULL,
  offense_count   integer NOT NULL,
  scheduled_cents bigint NOT NULL CHECK (scheduled_cents > 0),
  ordered_cents   bigint NOT NULL CHECK (ordered_cents > 0 AND ordered_cents <= scheduled_cents
                                         AND 3 * ordered_cents >= scheduled_cents),
  finding         boolean NOT NULL,
  hosting_agency  text NOT NULL,
  offense_date    date NOT NULL,
  assessed_date   date NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assessments_court ON assessments (court_org, assessed_date);
CREATE INDEX assessments_date ON assessments (assessed_date);

CREATE TABLE ledger_txns (
  id             bigserial PRIMARY KEY,
  kind           text NOT NULL CHECK (kind IN ('assessment', 'payment', 'reversal')),
  assessment_id  text NOT NULL REFERENCES assessments (id),
  payment_id     text,
  jurisdiction   text NOT NULL,
  court_org      text NOT NULL,
  effective_date date NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_txns_date ON ledger_txns (effective_date);

-- recipient_kind 0: the assessment's receivable and the court's assessed-fees account.
CREATE TABLE ledger_entries (
  id             bigserial PRIMARY KEY,
  txn_id         bigint NOT NULL REFERENCES ledger_txns (id),
  account        text NOT NULL,
  recipient_kind smallint NOT NULL,
  amount_cents   bigint NOT NULL CHECK (amount_cents <> 0)
);
CREATE INDEX ledger_entries_txn ON ledger_entries (txn_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account text_pattern_ops, txn_id);

CREATE TABLE payments (
  id            text PRIMARY KEY,
  assessment_id text NOT NULL REFERENCES assessments (id),
  amount_cents  bigint NOT NULL CHECK (amount_cents > 0),
  paid_date     date NOT NULL,
  policy_id     text NOT NULL REFERENCES disbursement_policies (id),
  txn_id        bigint NOT NULL REFERENCES ledger_txns (id),
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_assessment ON payments (assessment_id);

CREATE TABLE reversals (
  payment_id    text PRIMARY KEY REFERENCES payments (id),
  reversed_date date NOT NULL,
  txn_id        bigint NOT NULL REFERENCES ledger_txns (id),
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger tables are append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['assessments', 'ledger_txns', 'ledger_entries', 'payments',
                           'reversals', 'disbursement_policies'] LOOP
    EXECUTE format('CREATE TRIGGER %I_append_only BEFORE UPDATE OR DELETE ON %I '
                   'FOR EACH ROW EXECUTE FUNCTION refuse_change()', t, t);
    EXECUTE format('CREATE TRIGGER %I_no_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()', t, t);
  END LOOP;
END $$;

CREATE FUNCTION check_txn_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
  SELECT sum(amount_cents) INTO total FROM ledger_entries WHERE txn_id = NEW.txn_id;
  IF total <> 0 THEN
    RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.txn_id, total
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_balanced AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_txn_balanced();
