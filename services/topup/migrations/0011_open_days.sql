-- 0011: the open days (today and yesterday, before and after their close), counted up to an
-- instant by `topup maintain`: per site and UTC day, the visitors per value of each visit
-- attribute of the sessions begun that day, and per page and event name of their events,
-- over the events before `upto`. The dashboard's cards add the events from `upto` on, each
-- visitor only if the counts do not hold it yet (services/topup/open_days.py).
--
-- Why: a dashboard range leaves today to the session summaries, and at the end of a day at
-- 10M events a month that is ~100k sessions and ~330k events per card: 60 to 230 ms each, the
-- overview over 300 ms. With these counts the cards read only the events since `upto`.

CREATE TABLE open_days (
    site_id  uuid NOT NULL,
    day      date NOT NULL,
    tier     text NOT NULL,           -- whose visitors: sessions or daily hashes (a tier change
                                      -- makes the counts another tier's; they are rebuilt)
    upto     timestamptz NOT NULL,    -- a whole hour: the counts hold the events before it
    built_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, day)
);

CREATE TABLE open_day_values (
    site_id   uuid NOT NULL,
    day       date NOT NULL,
    dimension text NOT NULL,          -- the Stats API's name, e.g. 'visit:channel', 'event:page'
    value     text,                   -- NULL: the sessions without the attribute
    visitors  bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (site_id, day, dimension, value)
);

-- Who has been counted for a page or event name (the visit attributes need no such set: a
-- visitor's earlier sessions of the day are found by the index below).
CREATE TABLE open_day_members (
    site_id   uuid NOT NULL,
    day       date NOT NULL,
    dimension text NOT NULL,
    value     text NOT NULL,
    member    bigint NOT NULL,        -- the visitor as the tier counts it
    PRIMARY KEY (site_id, day, dimension, value, member)
);

-- A visitor's sessions (the privacy_policy tier's visitor; sessions have their own index).
CREATE INDEX initial_events_site_visitor
    ON initial_events (site_id, (coalesce(visitor_id, session_id)));
