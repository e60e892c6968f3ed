"""The laptop column of DESIGN.md: embedded Postgres, the local router and `topup dev`."""
