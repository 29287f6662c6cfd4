"""The process exit codes of every command (documented in README.md and docs/operations.md)."""

from __future__ import annotations

OK = 0
# The command ran and reports a failure: schema drift, not ready, a retry that still fails.
FAILED = 1
# Bad or missing configuration (one line naming the setting), or a login role with too much privilege.
USAGE = 2
# The database cannot be reached: refused, unknown host, no answer within FLOYO_CONNECT_TIMEOUT_SECONDS.
DATABASE_UNREACHABLE = 3
# The database answered no: wrong password, unknown role or database, permission denied.
DATABASE_REFUSED = 4
# The HTTP port cannot be opened (already in use, or not allowed).
HTTP_PORT_UNAVAILABLE = 5
# A second SIGTERM/SIGINT during the drain.
FORCED = 130
