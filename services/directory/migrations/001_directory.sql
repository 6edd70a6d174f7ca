-- Provider directory. Each resource is stored whole as its protobuf (body) with the columns
-- that queries filter and order on beside it; revision is the etag.
CREATE TABLE organizations (
  id          text PRIMARY KEY,
  kind        smallint NOT NULL,
  name        text NOT NULL,
  county_fips text,
  body        bytea NOT NULL,
  revision    bigint NOT NULL DEFAULT 1,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX organizations_kind_county ON organizations (kind, county_fips, id);

CREATE TABLE locations (
  org_id      text NOT NULL REFERENCES organizations (id),
  id          text NOT NULL,
  latitude    double precision NOT NULL,
  longitude   double precision NOT NULL,
  county_fips text,
  PRIMARY KEY (org_id, id)
);

CREATE TABLE services (
  id                  text PRIMARY KEY,
  org_id              text NOT NULL REFERENCES organizations (id),
  location_id         text NOT NULL,
  category            smallint NOT NULL,
  csec_specialized    boolean NOT NULL,
  minimum_age         integer NOT NULL,
  maximum_age         integer NOT NULL,
  genders             smallint[] NOT NULL,
  languages           text[] NOT NULL,
  open_24_7           boolean NOT NULL,
  time_zone           text NOT NULL,
  area_counties       text[] NOT NULL,
  status              smallint NOT NULL,
  accepting_referrals boolean NOT NULL,
  latitude            double precision NOT NULL,
  longitude           double precision NOT NULL,
  body                bytea NOT NULL,
  revision            bigint NOT NULL DEFAULT 1,
  create_time         timestamptz NOT NULL DEFAULT now(),
  update_time         timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (org_id, location_id) REFERENCES locations (org_id, id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX services_org ON services (org_id, id);
CREATE INDEX services_area ON services USING gin (area_counties);
CREATE INDEX services_position ON services (latitude, longitude);

-- Weekly opening hours as [start_min, end_min) minutes since Monday 00:00 in the service's zone.
CREATE TABLE service_open_intervals (
  service_id text NOT NULL REFERENCES services (id) ON DELETE CASCADE,
  start_min  integer NOT NULL CHECK (start_min >= 0 AND start_min < 10080),
  end_min    integer NOT NULL CHECK (end_min > start_min AND end_min <= 10080)
);
CREATE INDEX service_open_intervals_service ON service_open_intervals (service_id);
