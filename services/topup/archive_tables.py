"""The archive's Iceberg tables: columns, schema, partition spec, and rows → Arrow.

Shared by process (which appends) and query (which reads), and mirrored by the Glue tables in
`infra/`. Identifiers are strings (Athena and DuckDB read them as such) and timestamps are UTC
microseconds. Partitioned by `bucket(16, site_id)` and `day(ts)`: day partitions make a date
range read only its days; bucketing the site (rather than one partition per site) keeps a
small site from producing a file per day of its own while a one-site query still skips 15/16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform, DayTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from topup.archive_layout import (
    BUCKETS,
    COLUMNS,
    NAMESPACE,
    PARTITION_FIELDS,
    iceberg_fields,
)

_TYPES = {"string": StringType, "long": LongType, "timestamptz": TimestamptzType}


def schema_for(table: str) -> Schema:
    return Schema(
        *(
            NestedField(field_id, name, _TYPES[kind](), required=required)
            for field_id, name, kind, required in iceberg_fields(table)
        )
    )


SCHEMAS = {table: schema_for(table) for table in COLUMNS}


def partition_spec(schema: Schema) -> PartitionSpec:
    transforms: dict[str, Any] = {
        f"bucket[{BUCKETS}]": BucketTransform(BUCKETS),
        "day": DayTransform(),
    }
    return PartitionSpec(
        *(
            PartitionField(
                source_id=schema.find_field(source).field_id,
                field_id=1000 + i,
                transform=transforms[transform],
                name=name,
            )
            for i, (name, source, transform) in enumerate(PARTITION_FIELDS)
        )
    )


def catalog(root: Path) -> Any:
    """The local archive's catalog (sqlite): imported here, since the process image that writes
    the Glue tables carries no SQLAlchemy."""
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = root / "warehouse"
    warehouse.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(
        "topup",
        uri=f"sqlite:///{root / 'catalog.sqlite'}",
        warehouse=warehouse.resolve().as_uri(),
    )


def open_tables(root: Path) -> dict[str, Any]:
    cat = catalog(root)
    with contextlib.suppress(NamespaceAlreadyExistsError):
        cat.create_namespace(NAMESPACE)
    tables = {}
    for name, schema in SCHEMAS.items():
        identifier = f"{NAMESPACE}.{name}"
        try:
            tables[name] = cat.create_table(
                identifier, schema, partition_spec=partition_spec(schema)
            )
        except TableAlreadyExistsError:
            tables[name] = cat.load_table(identifier)
    return tables


def to_arrow(table: str, rows: Sequence[Any]) -> pa.Table:
    """Rows (objects with an attribute per column) as an Arrow table of the archive's schema."""
    schema = SCHEMAS[table].as_arrow()
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS[table]}
    for row in rows:
        for name in COLUMNS[table]:
            value = getattr(row, name)
            if name in ("event_id", "site_id"):
                value = str(value)
            elif name == "props" and value is not None:
                value = msgspec.json.encode(value).decode()
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=schema)
