"""The collector: volunteers' `probe upload`s land here, in probe's own SQLite schema (so `probe merge`, the
exports and the ClickHouse schema work on it as on any probe database).

- wire.py: the upload format (OONI Web Connectivity documents as `probe export --format ooni` writes them, with
  our UUIDs) and its strict validation; shared by the client (probe/volunteer/upload.py) and the server.
- store.py: tokens, and writing a validated batch through storage, durably, duplicates ignored.
- app.py: the HTTP API (Starlette), its limits, and serving it with hypercorn on trio.
"""
