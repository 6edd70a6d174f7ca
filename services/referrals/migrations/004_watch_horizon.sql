-- Watch streams resume only within a replay horizon: events older than it are pruned, and the
-- highest pruned sequence number refuses cursors from before it (the client resyncs).
CREATE TABLE watch_pruned (
  events_table text PRIMARY KEY,
  through_seq  bigint NOT NULL DEFAULT 0
);
INSERT INTO watch_pruned (events_table) VALUES ('referral_events');
CREATE INDEX referral_events_at ON referral_events (at);
