-- The organization a hold is for (the referral's referrer, named by the referral service): its
-- active holds are capped. Holds made before this migration count for their holder.
ALTER TABLE holds ADD COLUMN for_org text NOT NULL DEFAULT '';
UPDATE holds SET for_org = holder_org;
CREATE INDEX holds_for_org_active ON holds (for_org) WHERE state = 1;
