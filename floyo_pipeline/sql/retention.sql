-- The nightly privacy cleanup (floyo_pipeline.retention); its per-table queries are rendered from
-- floyo_pipeline/sql/templates/retention.sql.

-- name: retention_try_lock
select pg_try_advisory_xact_lock($1)
