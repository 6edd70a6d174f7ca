-- Radius searches read only the facilities inside the search box (GiST on the position).
CREATE INDEX facilities_geo ON facilities USING gist (point(longitude, latitude));
DROP INDEX facilities_position;
