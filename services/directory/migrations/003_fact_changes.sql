-- Facts that decide money or reach (an organization's kind, county and locations; a service's
-- area) change only through directory_admin, and every change is kept here, written in the
-- transaction that made it: who, when, the old value and the new. Append-only.
CREATE TABLE fact_changes (
  id              bigserial PRIMARY KEY,
  organization_id text NOT NULL,
  resource        text NOT NULL,  -- 'organization' or 'service'
  resource_id     text NOT NULL,
  field           text NOT NULL,
  old_value       text NOT NULL,
  new_value       text NOT NULL,
  actor_org       text NOT NULL,
  actor_role      text NOT NULL,
  change_time     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fact_changes_org ON fact_changes (organization_id, id);
