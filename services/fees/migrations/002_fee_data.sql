-- DOMAIN.md §6 as data. A legislative change is a new row with a new effective date.
INSERT INTO fee_schedules (statute, effective_from, citation, fee_type, tier0_cents, tier1_cents, tier2_cents) VALUES
  (1, '2000-01-01', 'RCW 9A.88.120(1)(b)', 'sex_buyer', 150000, 250000, 500000),
  (2, '2000-01-01', 'RCW 9A.88.120(1)(c)', 'sex_buyer', 150000, 250000, 500000),
  (3, '2000-01-01', 'RCW 9A.88.120(1)(d)', 'sex_buyer', 300000, 600000, 1000000),
  (4, '2000-01-01', 'RCW 9.68A.105', 'sex_buyer', 500000, 500000, 500000),
  (5, '2000-01-01', 'RCW 9.68A.106 (per offense)', 'internet_advertisement', 500000, 500000, 500000),
  (6, '2024-01-01', 'RCW 9A.40.100(7)', 'trafficking', 1000000, 1000000, 1000000),
  (7, '2000-01-01', 'RCW 9A.88.140', 'sex_buyer', 50000, 250000, 250000);

-- Recipient kinds: 1 local direct service providers, 2 hosting law-enforcement agency,
-- 3 Department of Commerce, 4 court clerk.
INSERT INTO disbursement_policies (id, fee_type, jurisdiction, effective_from, shares) VALUES
  ('default-sex-buyer', 'sex_buyer', '', '2000-01-01',
   '[{"kind": 1, "bp": 5000}, {"kind": 2, "bp": 4800}, {"kind": 3, "bp": 200}]'),
  ('default-trafficking', 'trafficking', '', '2024-01-01',
   '[{"kind": 1, "bp": 4500}, {"kind": 2, "bp": 4500}, {"kind": 4, "bp": 1000}]'),
  ('default-internet-advertisement', 'internet_advertisement', '', '2000-01-01',
   '[{"kind": 3, "bp": 10000}]');
