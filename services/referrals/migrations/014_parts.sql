-- One referral, several needs (issue 14): a referral is stored as one row per need. The lead
-- row keeps the id the referrer holds; each further need is a part row whose parent_id is the
-- lead's (its body's Referral.parent_id; the lead's body lists part_ids). Every row is routed,
-- offered, accepted, handed off and closed on its own.
ALTER TABLE referrals ADD COLUMN parent_id text REFERENCES referrals (id);
CREATE INDEX referrals_parent ON referrals (parent_id) WHERE parent_id IS NOT NULL;
