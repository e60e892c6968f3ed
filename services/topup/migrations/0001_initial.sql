-- 0001: accounts, sites, keys, salts, usage, deliveries, and the day-partitioned event tables.
--
-- How the dashboard reads this (DESIGN.md, "query"): every question is "for one site, over a time
-- range, grouped by a dimension". So both event tables are
--   * range-partitioned by day on `ts` (UTC): a range touches only its days, and retention is a
--     cheap `DROP TABLE` of a whole partition instead of a bulk DELETE;
--   * indexed on (site_id, ts) in every partition: the one access path all queries share.
-- Sessions carry their attributes once: the first event of a session also writes an
-- `initial_events` row (referrer, UTM, geo, device, entry page), and later events write only the
-- narrow `events` row. Visit metrics (visits, bounce rate, duration, exit page) join the two on
-- (site_id, session_id); that index is the second one `events` has.
-- Identifiers are 64-bit keyed hashes computed by process (bigint: 8 bytes, fast joins), never
-- the raw client id. Which nullable columns are filled depends on the site's privacy tier; see
-- services/topup/tiers.py. No column can hold a raw IP address or a full User-Agent string.

CREATE TABLE accounts (
    id          uuid PRIMARY KEY,
    -- OIDC subject (Cognito `sub`) for accounts that sign in with a token; NULL for key-only ones.
    external_id text UNIQUE,
    name        text NOT NULL,
    is_operator boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text NOT NULL,
    -- The first characters of the key, shown in lists so owners can tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the whole key: keys are long random secrets, so a fast hash is enough and lets
    -- a lookup be one index probe. The key itself is shown once and never stored.
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE sites (
    id                  uuid PRIMARY KEY,
    account_id          uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                text NOT NULL,
    domains             text[] NOT NULL CHECK (cardinality(domains) > 0),
    tier                text NOT NULL DEFAULT 'banner_free'
                        CHECK (tier IN ('banner_free', 'privacy_policy', 'full')),
    -- NULL keeps everything the tier allows; a list narrows it further.
    allowed_fields      text[],
    timezone            text NOT NULL DEFAULT 'UTC',
    -- Events the site may still record; process decrements it in the insert's transaction.
    allowance_remaining bigint NOT NULL DEFAULT 0 CHECK (allowance_remaining >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_account ON sites (account_id);
-- Plausible-format events name their site by domain.
CREATE INDEX sites_domains ON sites USING gin (domains);

-- One random salt per UTC day for the privacy_policy visitor hash. `topup maintain` deletes salts
-- older than 48 hours, after which a visitor id can no longer be linked to an IP address.
CREATE TABLE salts (
    day        date PRIMARY KEY,
    salt       bytea NOT NULL CHECK (octet_length(salt) >= 16),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Per site and day, how many events were accepted (outcome 'accepted') and dropped, by reason.
-- Events for an unknown site are counted under the nil site id.
CREATE TABLE usage_daily (
    site_id uuid NOT NULL,
    day     date NOT NULL,
    outcome text NOT NULL,
    events  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, day, outcome)
);

-- Firehose request ids already written, so a redelivered batch changes nothing. `archived_at`
-- is set once the batch is also in the archive: a retry after an archive failure re-sends only
-- that part.
CREATE TABLE processed_deliveries (
    request_id  text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    accepted    integer NOT NULL,
    dropped     integer NOT NULL,
    archived_at timestamptz
);

CREATE TABLE events (
    event_id   uuid NOT NULL,          -- UUIDv7 stamped by ingest; the idempotency key
    site_id    uuid NOT NULL,
    ts         timestamptz NOT NULL,   -- ingest's received_at: clients' clocks are not trusted
    session_id bigint NOT NULL,        -- keyed hash of the tab session id
    visitor_id bigint,                 -- privacy_policy and full: keyed daily hash
    name       text NOT NULL,          -- 'pageview' or a custom event name
    hostname   text NOT NULL,
    pathname   text NOT NULL,
    props      jsonb,                  -- privacy_policy and full: custom properties
    PRIMARY KEY (event_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX events_site_ts ON events (site_id, ts);
CREATE INDEX events_site_session ON events (site_id, session_id);

CREATE TABLE initial_events (
    event_id            uuid NOT NULL,
    site_id             uuid NOT NULL,
    ts                  timestamptz NOT NULL,
    session_id          bigint NOT NULL,
    visitor_id          bigint,
    distinct_id         text,          -- full tier only: the consented persistent id
    hostname            text NOT NULL,
    entry_page          text NOT NULL,
    referrer            text,          -- origin + path (full tier: the whole URL)
    referrer_source     text,
    channel             text,
    utm_source          text,
    utm_medium          text,
    utm_campaign        text,
    utm_content         text,
    utm_term            text,
    country             text,          -- ISO 3166-1 alpha-2
    region              text,          -- ISO 3166-2 subdivision
    city                text,
    timezone            text,
    device              text,          -- Desktop, Mobile, Tablet, ...
    browser             text,
    browser_version     text,
    os                  text,
    os_version          text,
    screen              text,
    device_model        text,
    device_manufacturer text,
    PRIMARY KEY (event_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX initial_events_site_ts ON initial_events (site_id, ts);
CREATE INDEX initial_events_site_session ON initial_events (site_id, session_id);

-- Partition management: one partition per UTC day, named <table>_pYYYYMMDD.
CREATE FUNCTION topup_create_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date := first_day;
    parent text;
    created integer := 0;
BEGIN
    -- Concurrent callers (deliveries, `topup maintain`) take turns, so none trips over a
    -- partition another is creating.
    PERFORM pg_advisory_xact_lock(hashtext('topup_create_partitions'));
    WHILE day <= last_day LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'initial_events'] LOOP
            IF to_regclass(format('%I', parent || '_p' || to_char(day, 'YYYYMMDD'))) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    parent || '_p' || to_char(day, 'YYYYMMDD'), parent,
                    day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;

-- Drops whole day partitions that end on or before `keep_from` (a UTC day). Returns their names.
CREATE FUNCTION topup_drop_partitions(keep_from date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname IN ('events', 'initial_events')
          AND c.relname ~ '_p[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') < keep_from
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
END $$;
