-- Named locks for the scheduled jobs (retention, the metrics snapshot): a job holds the row of its
-- name (select ... for update) for its transaction. A row lock, not an advisory lock: any role,
-- anon included, may take any advisory key (pg_advisory_lock is executable by PUBLIC, and on
-- Supabase the owner cannot revoke that), while this table, in the private schema, is reachable by
-- the worker and the owner only. Idempotent: every statement is safe to run twice.

create table if not exists floyo_pipeline.locks (
  name text primary key
);

insert into floyo_pipeline.locks (name)
values ('retention'), ('metrics_snapshot')
on conflict (name) do nothing;

grant select, insert, update on floyo_pipeline.locks to floyo_pipeline_worker;
