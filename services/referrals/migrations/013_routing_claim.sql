-- A routing claim's fencing token (services/referrals/router.h): every claim takes the next
-- number, and routing writes (the HoldBed about to be made, the offer, the escalation, the retry
-- time) only while the referral's number is still its own. A worker whose lease lapsed
-- mid-routing (a slow directory or beds service) finds it taken over and backs off, releasing
-- only its own hold: never an offer with a hold another worker released, never two beds held.
ALTER TABLE referrals ADD COLUMN routing_claim bigint NOT NULL DEFAULT 0;
