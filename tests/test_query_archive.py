"""Two stores, one answer: the same queries through Postgres and through the archive (Trino SQL
transpiled to DuckDB over the local Iceberg tables) give equal answers; and the Athena adapter
speaks Athena's protocol (against moto's server, which does not execute SQL)."""

from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from query import stats
from query.archive_reader import AthenaReader, LocalArchiveReader, scanned_bytes
from query.stats_sql import TRINO, build
from tests.stats_data import stats_query
from tests.test_query_stats import env  # noqa: F401  (the shared generated site)
from topup.database import connect

QUERIES = [
    {
        "metrics": [
            "visitors",
            "visits",
            "pageviews",
            "views_per_visit",
            "bounce_rate",
            "visit_duration",
            "events",
        ],
        "date_range": "30d",
    },
    {
        "metrics": ["visitors", "pageviews", "bounce_rate"],
        "date_range": "7d",
        "dimensions": ["time:day"],
        "include": {"time_labels": True, "comparisons": {"mode": "previous_period"}},
    },
    {"metrics": ["pageviews", "visit_duration"], "date_range": "day", "dimensions": ["time:hour"]},
    {
        "metrics": ["visitors", "percentage"],
        "date_range": "30d",
        "dimensions": ["visit:source", "visit:channel"],
    },
    {
        "metrics": ["visitors", "visits"],
        "date_range": "30d",
        "dimensions": ["event:page"],
        "filters": [
            ["contains", "visit:country", ["d"]],
            ["not", ["matches", "event:page", ["^/blog"]]],
        ],
    },
    {
        "metrics": ["events", "conversion_rate"],
        "date_range": "30d",
        "dimensions": ["event:props:plan"],
        "filters": [["is", "event:name", ["Signup"]]],
    },
    {
        "metrics": ["visitors", "bounce_rate"],
        "date_range": "30d",
        "dimensions": ["visit:exit_page", "visit:device"],
        "filters": [["is_not", "visit:browser", ["Chrome"]]],
        "order_by": [["visit:exit_page", "asc"]],
    },
    {
        "metrics": ["visitors"],
        "date_range": "30d",
        "dimensions": ["time:week"],
        "filters": [
            [
                "or",
                [
                    ["is", "visit:utm_campaign", ["november"]],
                    ["contains_not", "visit:referrer", ["o"]],
                ],
            ]
        ],
    },
]


@pytest.mark.parametrize("body", QUERIES)
async def test_postgres_and_the_archive_answer_alike(env, body):  # noqa: F811
    site = env["site"]
    conn = await connect(env["url"])
    try:
        query = stats_query(site.id, body, tier=site.tier, zone=site.timezone)
        recent = stats.Stores(conn, None, 30)
        archive = stats.Stores(conn, LocalArchiveReader(env["data_dir"] / "archive"), 0)
        assert archive.uses_archive(query) and not recent.uses_archive(query)
        from_postgres = await stats.answer(recent, query, site.id, site.tier, {})
        from_archive = await stats.answer(archive, query, site.id, site.tier, {})
    finally:
        await conn.close()
    assert msgspec.to_builtins(from_archive) == msgspec.to_builtins(from_postgres)
    assert from_postgres.results, "a query that finds nothing proves little"


async def test_a_range_without_archived_files_answers_like_postgres(env):  # noqa: F811
    """No data file in the range: nothing for DuckDB to read, the same empty answer."""
    site = env["site"]
    body = {"metrics": ["visitors", "pageviews", "bounce_rate"], "date_range": ["2020-01-01", "2020-01-31"],
            "dimensions": ["visit:source"]}  # fmt: skip
    query = stats_query(site.id, body, tier=site.tier, zone=site.timezone)
    conn = await connect(env["url"])
    try:
        archive = stats.Stores(conn, LocalArchiveReader(env["data_dir"] / "archive"), 0)
        from_archive = await stats.answer(archive, query, site.id, site.tier, {})
        from_postgres = await stats.answer(
            stats.Stores(conn, None, 10_000), query, site.id, site.tier, {}
        )
    finally:
        await conn.close()
    assert msgspec.to_builtins(from_archive) == msgspec.to_builtins(from_postgres)
    assert from_archive.results == []


def _column_bytes(table) -> int:
    import pyarrow.parquet as pq

    total = 0
    for task in table.scan().plan_files():
        with table.io.new_input(task.file.file_path).open() as stream:
            meta = pq.ParquetFile(stream).metadata
        for group in range(meta.num_row_groups):
            row_group = meta.row_group(group)
            total += sum(row_group.column(i).total_compressed_size for i in range(meta.num_columns))
    return total


def test_scanned_bytes_are_the_named_columns_of_the_ranges_files(env):  # noqa: F811
    """What the cost model prices Athena by: the column chunks a query names, in the files of
    its range: a query naming session columns also scans initial_events, and a range with no
    files scans nothing."""
    from topup.archive_tables import open_tables

    root, site = env["data_dir"] / "archive", env["site"]
    whole = sum(_column_bytes(table) for table in open_tables(root).values())

    def scanned(body):
        query = stats_query(site.id, body, tier=site.tier, zone=site.timezone)
        sql, _ = build(query, site.id, site.tier, None, TRINO)
        return scanned_bytes(root, sql, site.id, query.start, query.end)

    counted = scanned({"metrics": ["events"], "date_range": "30d"})
    sourced = scanned(
        {"metrics": ["visitors", "events"], "date_range": "30d", "dimensions": ["visit:source"]}
    )
    assert 0 < counted < sourced < whole
    assert scanned({"metrics": ["events"], "date_range": ["2020-01-01", "2020-01-31"]}) == 0


async def test_the_archive_reads_a_redelivered_event_once(env):  # noqa: F811  (runs last: it adds duplicates)
    from topup.archive_tables import open_tables

    tables = open_tables(env["data_dir"] / "archive")
    events = tables["events"].scan().to_arrow()
    body = {"metrics": ["events"], "date_range": "30d"}
    query = stats_query(env["site"].id, body, tier=env["site"].tier)
    reader = LocalArchiveReader(env["data_dir"] / "archive")
    sql, params = build(query, env["site"].id, env["site"].tier, None, TRINO)
    before = (await reader.fetch(sql, params, env["site"].id, query.start, query.end))[0]["events"]
    tables["events"].append(events.slice(0, 25))  # an archive retry wrote 25 events twice
    after = (await reader.fetch(sql, params, env["site"].id, query.start, query.end))[0]["events"]
    assert after == before


def _athena_results(columns, rows):
    info = [
        {
            "Name": name,
            "Type": kind,
            "Label": name,
            "CatalogName": "hive",
            "SchemaName": "",
            "TableName": "",
            "Precision": 0,
            "Scale": 0,
            "Nullable": "UNKNOWN",
            "CaseSensitive": True,
        }
        for name, kind in columns
    ]
    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    data = [{"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in rows]
    return {"results": [{"rows": [header, *data], "column_info": info}]}


async def test_athena_adapter_protocol(moto_server):
    columns = [
        ("d0", "timestamp"),
        ("visitors", "bigint"),
        ("bounce_rate", "double"),
        ("source", "varchar"),
    ]
    rows = [
        ["2026-11-20 00:00:00.000", "12", "41.5", "Google"],
        ["2026-11-21 00:00:00.000", "3", "100.0", None],
    ]
    async with httpx.AsyncClient() as client:
        seeded = await client.post(
            f"{moto_server}/moto-api/static/athena/query-results",
            json=_athena_results(columns, rows),
        )
    assert seeded.status_code == 201
    reader = AthenaReader(
        workgroup="primary",
        database="topup",
        region="us-east-1",
        endpoint_url=moto_server,
        first_poll_s=0.01,
    )
    got = await reader.fetch(
        "SELECT 1 WHERE ? = ?", ["it's", 7], None, datetime.now(UTC), datetime.now(UTC)
    )
    assert got == [
        {"d0": datetime(2026, 11, 20), "visitors": 12, "bounce_rate": 41.5, "source": "Google"},
        {"d0": datetime(2026, 11, 21), "visitors": 3, "bounce_rate": 100.0, "source": None},
    ]
    import aioboto3

    async with aioboto3.Session().client(
        "athena", region_name="us-east-1", endpoint_url=moto_server
    ) as athena:
        executions = (await athena.list_query_executions())["QueryExecutionIds"]
        details = (await athena.get_query_execution(QueryExecutionId=executions[-1]))[
            "QueryExecution"
        ]
    assert details["Query"] == "SELECT 1 WHERE ? = ?"
    assert details["WorkGroup"] == "primary"
    assert details["QueryExecutionContext"]["Database"] == "topup"
    assert details.get("ExecutionParameters") in (None, ["'it''s'", "7"])
