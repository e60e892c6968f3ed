-- 0002: a per-visitor rate limit, so a script that sends events with a site's id cannot drain
-- its allowance. A visitor is the daily hash where the site's tier keeps one, else the session.
-- Counts are kept per UTC hour, under the site's advisory lock in the delivery's transaction,
-- and `topup maintain` deletes hours that are over.

ALTER TABLE sites
    ADD COLUMN visitor_hourly_limit integer NOT NULL DEFAULT 500 CHECK (visitor_hourly_limit > 0);

CREATE TABLE visitor_counters (
    site_id uuid NOT NULL,
    visitor bigint NOT NULL,       -- the same keyed hash stored in events (visitor or session)
    hour    timestamptz NOT NULL,
    events  integer NOT NULL,
    PRIMARY KEY (site_id, visitor, hour)
);
