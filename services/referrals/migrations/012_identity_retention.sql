-- Identifying details kept only under the youth's consent (issue 14; services/referrals/
-- retention.h): when they are due to be purged (the consent's expiry, its revocation, or a
-- retention period after the referral closed), and the intake's request_id, whose record holds
-- keyed fingerprints of them that are purged with them.
ALTER TABLE referrals ADD COLUMN identity_purge_at timestamptz, ADD COLUMN create_request_id text;
-- Details stored before consent was recorded have no consent on record: due at once.
UPDATE referrals SET identity_purge_at = create_time WHERE identity_sealed IS NOT NULL;
CREATE INDEX referrals_identity_purge ON referrals (identity_purge_at)
  WHERE identity_sealed IS NOT NULL;
