-- Radius searches read only the services inside the search box (a GiST index on the position),
-- not the whole latitude band a B-tree on (latitude, longitude) scans: search time follows the
-- services near the youth, not the size of the state's directory.
CREATE INDEX services_geo ON services USING gist (point(longitude, latitude));
DROP INDEX services_position;
