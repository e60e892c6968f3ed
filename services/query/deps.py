"""What handlers are given: the caller's account, a database connection, the settings."""

from __future__ import annotations

import asyncpg
from litestar.di import NamedDependency

from topup.accounts import Account
from topup.settings import Settings

Caller = NamedDependency[Account]
Conn = NamedDependency[asyncpg.Connection]
Config = NamedDependency[Settings]
