"""Reading the archive: the Trino SQL of `stats_sql`, run where the archive lives.

- `AthenaReader` (AWS): StartQueryExecution in the configured workgroup (which caps the bytes a
  query may scan), polling with backoff up to a time limit, paginated results.
- `LocalArchiveReader` (`topup dev`): the SQL transpiled to DuckDB with sqlglot, run over the
  Parquet files a pyiceberg scan of the local warehouse plans (DuckDB's own iceberg extension
  cannot be downloaded here): the site's days, pruned by the partition spec, only the columns
  the SQL names.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from topup.archive_layout import local_path
from topup.settings import Settings

Row = dict[str, Any]


class ArchiveQueryError(RuntimeError):
    """The archive could not answer (a failed or timed-out query)."""


class ArchiveReader(Protocol):
    async def fetch(
        self, sql: str, params: list[Any], site_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[Row]: ...


class LocalArchiveReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    async def fetch(
        self, sql: str, params: list[Any], site_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[Row]:
        return await asyncio.to_thread(self._fetch, sql, params, site_id, start, end)

    def _fetch(
        self, sql: str, params: list[Any], site_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[Row]:
        import duckdb
        import sqlglot

        con = duckdb.connect()
        try:
            for name, scan in _scans(self.root, sql, site_id, start, end).items():
                _register(con, name, scan, _Range.of(site_id, start, end))
            local_sql = sqlglot.transpile(sql, read="trino", write="duckdb")[0]
            cursor = con.execute(local_sql, params)
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
        finally:
            con.close()


class _Range(NamedTuple):
    """The rows a query may need: the site's, from two days before the range (sessions may
    begin up to two days earlier: stats_sql.SESSION_SLACK) to its end. Every value is ours (a
    UUID, two instants), so the filter texts below are safe to compose."""

    site: uuid.UUID
    since: str
    until: str

    @classmethod
    def of(cls, site_id: uuid.UUID, start: datetime, end: datetime) -> _Range:
        since = (start - timedelta(days=2)).isoformat()
        return cls(uuid.UUID(str(site_id)), since, end.isoformat())

    def iceberg(self) -> str:
        return f"site_id == '{self.site}' AND ts >= '{self.since}' AND ts < '{self.until}'"

    def duckdb(self) -> str:
        return (
            f"site_id = '{self.site}' AND ts >= TIMESTAMPTZ '{self.since}' "
            f"AND ts < TIMESTAMPTZ '{self.until}'"
        )


def _scans(
    root: Path, sql: str, site_id: uuid.UUID, start: datetime, end: datetime
) -> dict[str, Any]:
    """A scan of each archive table the SQL reads: the site's rows in the range (pruned by the
    partition spec), only the columns the SQL names."""
    import sqlglot
    from sqlglot import expressions

    from topup.archive_tables import open_tables

    parsed = sqlglot.parse_one(sql, read="trino")
    read = {t.name.lower() for t in parsed.find_all(expressions.Table)}
    named = {c.name.lower() for c in parsed.find_all(expressions.Column)}
    row_filter = _Range.of(site_id, start, end).iceberg()
    scans = {}
    for name, table in open_tables(root).items():
        if name in read:
            fields = tuple(f.name for f in table.schema().fields if f.name in named)
            scans[name] = table.scan(row_filter=row_filter, selected_fields=fields or ("*",))
    return scans


def _register(con: Any, name: str, scan: Any, rows: _Range) -> None:
    """Make `name` the scan's rows in DuckDB. DuckDB reads the Parquet files the scan plans
    itself — in parallel, only the named columns, several times faster than pyiceberg's reader
    — and applies the scan's row filter in SQL. Files with deletes (the archive only appends,
    but a table may be maintained by other tools) or off this machine go through pyiceberg."""
    tasks = list(scan.plan_files())
    paths = [local_path(task.file.file_path) for task in tasks]
    if not tasks or any(task.delete_files for task in tasks) or None in paths:
        con.register(name, scan.to_arrow())
        return
    con.register(f"{name}_files", con.read_parquet(paths, hive_partitioning=False))
    columns = ", ".join(scan.selected_fields)
    con.execute(f"CREATE VIEW {name} AS SELECT {columns} FROM {name}_files WHERE {rows.duckdb()}")


def scanned_bytes(root: Path, sql: str, site_id: uuid.UUID, start: datetime, end: datetime) -> int:
    """The bytes Athena would scan for this query over the local archive: the compressed column
    chunks it names, in the data files left after partition pruning (Athena bills these, at
    least 10 MB a query; the cost model's archive input). An upper bound: Trino also drops
    columns a CTE names that no outer query uses."""
    import pyarrow.parquet as pq

    total = 0
    for scan in _scans(root, sql, site_id, start, end).values():
        wanted = set(scan.selected_fields)
        every = "*" in wanted
        for task in scan.plan_files():
            with scan.io.new_input(task.file.file_path).open() as stream:
                metadata = pq.ParquetFile(stream).metadata
            for group in range(metadata.num_row_groups):
                row_group = metadata.row_group(group)
                for i in range(row_group.num_columns):
                    chunk = row_group.column(i)
                    if every or chunk.path_in_schema.split(".")[0] in wanted:
                        total += chunk.total_compressed_size
    return total


_ATHENA_TYPES: dict[str, Callable[[str], Any]] = {
    "bigint": int, "integer": int, "smallint": int, "tinyint": int, "double": float,
    "float": float, "real": float, "decimal": Decimal, "boolean": lambda v: v == "true",
}  # fmt: skip


def _athena_value(value: str | None, kind: str) -> Any:
    if value is None:
        return None
    if kind in _ATHENA_TYPES:
        return _ATHENA_TYPES[kind](value)
    if kind.startswith("timestamp"):
        return datetime.fromisoformat(value.replace(" UTC", "").strip())
    return value


class AthenaReader:
    """Athena over the Glue Iceberg tables."""

    def __init__(
        self, *, workgroup: str, database: str, region: str, endpoint_url: str | None = None,
        time_limit_s: float = 60.0, first_poll_s: float = 0.2, max_poll_s: float = 2.0,
    ) -> None:  # fmt: skip
        self.workgroup = workgroup
        self.database = database
        self.region = region
        self.endpoint_url = endpoint_url
        self.time_limit_s = time_limit_s
        self.first_poll_s = first_poll_s
        self.max_poll_s = max_poll_s

    async def fetch(
        self, sql: str, params: list[Any], site_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[Row]:
        import aioboto3

        async with aioboto3.Session().client(
            "athena", region_name=self.region, endpoint_url=self.endpoint_url
        ) as athena:
            request: dict[str, Any] = {
                "QueryString": sql,
                "WorkGroup": self.workgroup,
                "QueryExecutionContext": {"Database": self.database},
            }
            if params:
                # Athena substitutes execution parameters as SQL literals: quote strings.
                request["ExecutionParameters"] = [_athena_literal(p) for p in params]
            started = await athena.start_query_execution(**request)
            execution_id = started["QueryExecutionId"]
            await self._wait(athena, execution_id)
            return await self._results(athena, execution_id)

    async def _wait(self, athena: Any, execution_id: str) -> None:
        deadline = time.monotonic() + self.time_limit_s
        pause = self.first_poll_s
        while True:
            status = (await athena.get_query_execution(QueryExecutionId=execution_id))[
                "QueryExecution"
            ]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason", state)
                raise ArchiveQueryError(f"Athena query {execution_id} {state.lower()}: {reason}")
            if time.monotonic() + pause > deadline:
                await athena.stop_query_execution(QueryExecutionId=execution_id)
                raise ArchiveQueryError(
                    f"Athena query {execution_id} took longer than {self.time_limit_s:.0f} s"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.max_poll_s)

    async def _results(self, athena: Any, execution_id: str) -> list[Row]:
        rows: list[Row] = []
        columns: list[tuple[str, str]] = []
        token: str | None = None
        first_page = True
        while True:
            request: dict[str, Any] = {"QueryExecutionId": execution_id, "MaxResults": 1000}
            if token:
                request["NextToken"] = token
            page = await athena.get_query_results(**request)
            result = page["ResultSet"]
            if not columns:
                columns = [
                    (c["Name"], c["Type"].lower())
                    for c in result["ResultSetMetadata"]["ColumnInfo"]
                ]
            data = result["Rows"]
            if first_page and data:
                data = data[1:]  # the first row of the first page repeats the column names
            first_page = False
            for row in data:
                values = [cell.get("VarCharValue") for cell in row["Data"]]
                rows.append(
                    {
                        name: _athena_value(v, kind)
                        for (name, kind), v in zip(columns, values, strict=True)
                    }
                )
            token = page.get("NextToken")
            if not token:
                return rows


def _athena_literal(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def archive_reader_from_settings(settings: Settings) -> ArchiveReader:
    if settings.archive == "firehose":
        return AthenaReader(
            workgroup=settings.athena_workgroup, database=settings.athena_database,
            region=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
        )  # fmt: skip
    return LocalArchiveReader(Path(settings.data_dir) / "archive")
