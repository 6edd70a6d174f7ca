-- Placement-bed availability. bed_inventory rows are the unit of locking: every change to a
-- bed type's holds or occupancy locks its row first, so holds + occupied never exceed the
-- in-service capacity whatever the concurrency and however many replicas run.
CREATE TABLE facilities (
  id               text PRIMARY KEY,
  org_id           text NOT NULL,
  placement_type   smallint NOT NULL,
  routable         boolean NOT NULL,
  county_fips      text NOT NULL,
  latitude         double precision NOT NULL,
  longitude        double precision NOT NULL,
  minimum_age      integer NOT NULL,
  maximum_age      integer NOT NULL,
  genders          smallint[] NOT NULL,
  csec_specialized boolean NOT NULL,
  body             bytea NOT NULL,
  revision         bigint NOT NULL DEFAULT 1,
  create_time      timestamptz NOT NULL,
  update_time      timestamptz NOT NULL
);
CREATE INDEX facilities_org ON facilities (org_id, id);
CREATE INDEX facilities_county ON facilities (county_fips, id);
CREATE INDEX facilities_position ON facilities (latitude, longitude);

CREATE TABLE bed_inventory (
  facility_id       text NOT NULL REFERENCES facilities (id),
  bed_type          smallint NOT NULL,
  licensed_capacity integer NOT NULL CHECK (licensed_capacity >= 0),
  occupied          integer NOT NULL DEFAULT 0 CHECK (occupied >= 0),
  out_of_service    integer NOT NULL DEFAULT 0 CHECK (out_of_service >= 0),
  confirmed_at      timestamptz,
  PRIMARY KEY (facility_id, bed_type)
);

-- state: 1 active, 2 released, 3 expired, 4 confirmed. An active hold past expire_time
-- no longer counts; the sweeper marks it expired.
CREATE TABLE holds (
  id           text PRIMARY KEY,
  facility_id  text NOT NULL,
  bed_type     smallint NOT NULL,
  referral_id  text NOT NULL,
  holder_org   text NOT NULL,
  state        smallint NOT NULL,
  create_time  timestamptz NOT NULL,
  expire_time  timestamptz NOT NULL,
  closed_time  timestamptz,
  FOREIGN KEY (facility_id, bed_type) REFERENCES bed_inventory (facility_id, bed_type)
);
CREATE INDEX holds_active ON holds (facility_id, bed_type) WHERE state = 1;
CREATE INDEX holds_expiring ON holds (expire_time) WHERE state = 1;

CREATE TABLE placements (
  id             text PRIMARY KEY,
  hold_id        text NOT NULL UNIQUE REFERENCES holds (id),
  facility_id    text NOT NULL,
  bed_type       smallint NOT NULL,
  referral_id    text NOT NULL,
  placed_time    timestamptz NOT NULL,
  discharge_time timestamptz
);

-- Every availability change, in commit order of its sequence: the watch stream's source of
-- truth and resume cursor.
CREATE TABLE availability_events (
  seq         bigserial PRIMARY KEY,
  facility_id text NOT NULL,
  county_fips text NOT NULL,
  reason      text NOT NULL,
  payload     bytea NOT NULL,
  at          timestamptz NOT NULL
);
