-- Statutory timers (issue 14, DOMAIN.md §7): the law's clocks a confirmed hand-off starts, one
-- row per referral and kind, inserted in the hand-off's own transaction (so a hand-off is never
-- committed without its clocks, and a rolled-back one starts none). kind is the proto's
-- StatutoryTimerKind: 1 the crisis residential center's 24-hour report, 2 the DCYF notice,
-- 3 the 72-hour emergency placement window (weekends and state holidays excluded).
--
-- fired: when the timer fell due unfiled and its webhook event was queued; set once, by the
-- replica that claimed the row (FOR UPDATE SKIP LOCKED) in the transaction that queued the
-- event. satisfied / satisfied_by: when and by which organization it was marked filed.
CREATE TABLE statutory_timers (
  referral_id  text NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  kind         smallint NOT NULL,
  started      timestamptz NOT NULL,
  due          timestamptz NOT NULL,
  fired        timestamptz,
  satisfied    timestamptz,
  satisfied_by text,
  created      timestamptz NOT NULL,
  PRIMARY KEY (referral_id, kind)
);
-- The claim of due timers, and the gauges of those still open.
CREATE INDEX statutory_timers_due ON statutory_timers (due)
  WHERE fired IS NULL AND satisfied IS NULL;
CREATE INDEX statutory_timers_open ON statutory_timers (kind, due) WHERE satisfied IS NULL;
