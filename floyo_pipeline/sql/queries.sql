-- Every query the engine runs, by name. Loaded by floyo_pipeline.queries.

-- name: has_auth_schema
select exists (select 1 from pg_namespace where nspname = 'auth')

-- name: ensure_migrations_table
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text

-- name: applied_migrations
select version from supabase_migrations.schema_migrations order by version

-- name: record_migration
insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)

-- name: ensure_service_login_role
do $$ begin
  if not exists (select 1 from pg_roles where rolname = '$role') then
    create role $role login in role floyo_pipeline_worker;
  end if;
end $$

-- name: migrate_lock
select pg_advisory_lock(7310001)

-- name: migrate_unlock
select pg_advisory_unlock(7310001)

-- name: stream_partitions
select stream, partitions from floyo_pipeline.streams order by stream

-- name: ensure_checkpoints
insert into floyo_pipeline.checkpoints (consumer, stream, partition)
select $1, s.stream, p
from floyo_pipeline.streams s, generate_series(0, s.partitions - 1) as p
where s.stream = $2
on conflict do nothing

-- name: replica_heartbeat
insert into floyo_pipeline.replicas (replica_id, expires_at)
values ($1, now() + make_interval(secs => $2))
on conflict (replica_id) do update set expires_at = excluded.expires_at

-- name: replica_remove
delete from floyo_pipeline.replicas where replica_id = $1

-- name: replicas_live
select count(*) from floyo_pipeline.replicas where expires_at > now()

-- name: replicas_prune
delete from floyo_pipeline.replicas where expires_at < now() - interval '1 hour'

-- name: lease_total
select count(*) from floyo_pipeline.checkpoints where consumer = any($1::text[])

-- name: lease_renew
update floyo_pipeline.checkpoints
set lease_expires_at = now() + make_interval(secs => $2)
where lease_owner = $1 and lease_expires_at > now()
returning consumer, stream, partition, lease_epoch

-- name: lease_claim
with candidates as (
  select consumer, stream, partition
  from floyo_pipeline.checkpoints
  where consumer = any($2::text[])
    and (lease_owner is null or lease_expires_at is null or lease_expires_at < now())
  -- By partition first, so that a replica tends to hold every consumer of a partition and reads
  -- its rows once for all of them.
  order by hashtext(stream || '/' || partition::text) # hashtext($1), stream, partition, consumer
  limit $4
  for update skip locked
)
update floyo_pipeline.checkpoints c
set lease_owner = $1,
    lease_epoch = c.lease_epoch + 1,
    lease_expires_at = now() + make_interval(secs => $3),
    updated_at = now()
from candidates
where c.consumer = candidates.consumer and c.stream = candidates.stream and c.partition = candidates.partition
returning c.consumer, c.stream, c.partition, c.lease_epoch, c.position_txid, c.position_id, c.pending

-- name: lease_release
update floyo_pipeline.checkpoints
set lease_owner = null, lease_expires_at = null, updated_at = now()
where consumer = $1 and stream = $2 and partition = $3 and lease_owner = $4 and lease_epoch = $5

-- name: lease_release_all
update floyo_pipeline.checkpoints
set lease_owner = null, lease_expires_at = null, updated_at = now()
where lease_owner = $1

-- name: checkpoint_advance
-- Advances cursors of one stream; fenced: only where this replica still holds the lease at the
-- epoch it claimed (fewer rows updated than given means a lease was lost and nothing may commit).
update floyo_pipeline.checkpoints c
set position_txid = u.position_txid, position_id = u.position_id, pending = u.pending,
    processed_total = c.processed_total + u.processed, updated_at = now()
from unnest($3::text[], $4::int[], $5::bigint[], $6::xid8[], $7::bigint[], $8::jsonb[], $9::bigint[])
  as u(consumer, partition, epoch, position_txid, position_id, pending, processed)
where c.stream = $1 and c.consumer = u.consumer and c.partition = u.partition
  and c.lease_owner = $2 and c.lease_epoch = u.epoch and c.lease_expires_at > now()

-- name: fetch_forward_telemetry_events
-- The next rows after the reader's positions, in (transaction, id) order, of the partitions it
-- leases: $1/$2 the smallest position, $3 the partitions, $4/$5 each partition's position (indexed
-- by partition + 1). Also the transactions open in this statement's snapshot (in_progress); with no
-- rows, one row of nulls carries it.
select s.in_progress, r.*
from (select coalesce(array_agg(x), '{}') as in_progress from pg_snapshot_xip(pg_current_snapshot()) as x) s
left join lateral (
  select id, floyo_pipeline.user_partition(user_id) as pipeline_partition, pipeline_txid, user_id, occurred_at,
         app_id, event_type, file_path, duration_ms, metadata, created_at
  from public.telemetry_events
  where (pipeline_txid, id) > ($1::xid8, $2::bigint)
    and floyo_pipeline.user_partition(user_id) = any($3::int[])
    and (pipeline_txid, id) > (($4::xid8[])[floyo_pipeline.user_partition(user_id) + 1], ($5::bigint[])[floyo_pipeline.user_partition(user_id) + 1])
  order by pipeline_txid, id
  limit $6
) r on true

-- name: fetch_pending_telemetry_events
-- Rows of transactions that were still open when the cursor passed them ($1), of the reader's
-- partitions ($2); the caller keeps those after each partition's pending row id. Also the
-- transactions open in this statement's snapshot, as above.
select s.in_progress, r.*
from (select coalesce(array_agg(x), '{}') as in_progress from pg_snapshot_xip(pg_current_snapshot()) as x) s
left join lateral (
  select id, floyo_pipeline.user_partition(user_id) as pipeline_partition, pipeline_txid, user_id, occurred_at,
         app_id, event_type, file_path, duration_ms, metadata, created_at
  from public.telemetry_events
  where pipeline_txid = any($1::xid8[]) and floyo_pipeline.user_partition(user_id) = any($2::int[])
  order by pipeline_txid, id
  limit $3
) r on true

-- name: fetch_row_telemetry_events
select id, floyo_pipeline.user_partition(user_id) as pipeline_partition, pipeline_txid, user_id, occurred_at,
       app_id, event_type, file_path, duration_ms, metadata, created_at
from public.telemetry_events where id = $1

-- name: fetch_forward_metrics_log
-- The next rows after the reader's positions, in (transaction, id) order, of the partitions it
-- leases: $1/$2 the smallest position, $3 the partitions, $4/$5 each partition's position (indexed
-- by partition + 1). Also the transactions open in this statement's snapshot (in_progress); with no
-- rows, one row of nulls carries it.
select s.in_progress, r.*
from (select coalesce(array_agg(x), '{}') as in_progress from pg_snapshot_xip(pg_current_snapshot()) as x) s
left join lateral (
  select id, 0 as pipeline_partition, pipeline_txid, ts, source, metric, created_at
  from public.metrics_log
  where (pipeline_txid, id) > ($1::xid8, $2::bigint)
    and 0 = any($3::int[])
    and (pipeline_txid, id) > (($4::xid8[])[0 + 1], ($5::bigint[])[0 + 1])
  order by pipeline_txid, id
  limit $6
) r on true

-- name: fetch_pending_metrics_log
-- Rows of transactions that were still open when the cursor passed them ($1), of the reader's
-- partitions ($2); the caller keeps those after each partition's pending row id. Also the
-- transactions open in this statement's snapshot, as above.
select s.in_progress, r.*
from (select coalesce(array_agg(x), '{}') as in_progress from pg_snapshot_xip(pg_current_snapshot()) as x) s
left join lateral (
  select id, 0 as pipeline_partition, pipeline_txid, ts, source, metric, created_at
  from public.metrics_log
  where pipeline_txid = any($1::xid8[]) and 0 = any($2::int[])
  order by pipeline_txid, id
  limit $3
) r on true

-- name: fetch_row_metrics_log
select id, 0 as pipeline_partition, pipeline_txid, ts, source, metric, created_at
from public.metrics_log where id = $1

-- name: dead_letter_insert
insert into floyo_pipeline.dead_letters
  (consumer, stream, partition, row_id, error_class, error_message, attempts)
select r.consumer, $1, r.partition, r.row_id, r.error_class, r.error_message, r.attempts
from unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::int[])
  as r(consumer, partition, row_id, error_class, error_message, attempts)

-- name: status_telemetry_events
-- Lag per checkpoint: rows after its position (one scan from the smallest position per consumer).
with cp as (
  select * from floyo_pipeline.checkpoints where stream = 'telemetry_events'
), lag as (
  select cp.consumer, cp.partition, count(*) as rows, min(t.created_at) as oldest
  from public.telemetry_events t
  join cp on cp.partition = floyo_pipeline.user_partition(t.user_id)
         and (t.pipeline_txid, t.id) > (cp.position_txid, cp.position_id)
  where t.pipeline_txid >= (select min(position_txid) from cp)
  group by cp.consumer, cp.partition
)
select cp.consumer, cp.stream, cp.partition, cp.position_txid::text as position_txid, cp.position_id,
       cp.processed_total, cp.lease_owner, cp.lease_expires_at, cp.lease_epoch,
       coalesce(lag.rows, 0) as lag_rows,
       coalesce(extract(epoch from now() - lag.oldest), 0)::float8 as lag_seconds
from cp left join lag using (consumer, partition)
order by cp.consumer, cp.partition

-- name: status_metrics_log
-- Lag per checkpoint: rows after its position (one scan from the smallest position per consumer).
with cp as (
  select * from floyo_pipeline.checkpoints where stream = 'metrics_log'
), lag as (
  select cp.consumer, cp.partition, count(*) as rows, min(t.created_at) as oldest
  from public.metrics_log t
  join cp on cp.partition = 0
         and (t.pipeline_txid, t.id) > (cp.position_txid, cp.position_id)
  where t.pipeline_txid >= (select min(position_txid) from cp)
  group by cp.consumer, cp.partition
)
select cp.consumer, cp.stream, cp.partition, cp.position_txid::text as position_txid, cp.position_id,
       cp.processed_total, cp.lease_owner, cp.lease_expires_at, cp.lease_epoch,
       coalesce(lag.rows, 0) as lag_rows,
       coalesce(extract(epoch from now() - lag.oldest), 0)::float8 as lag_seconds
from cp left join lag using (consumer, partition)
order by cp.consumer, cp.partition

-- name: dead_letter_counts
select consumer, stream, status, count(*) as n
from floyo_pipeline.dead_letters group by consumer, stream, status order by consumer, stream, status

-- name: dead_letter_list
select id, consumer, stream, partition, row_id, error_class, error_message, attempts, status, created_at,
       resolved_at
from floyo_pipeline.dead_letters
where ($1::text is null or status = $1)
order by id

-- name: dead_letter_get
select id, consumer, stream, partition, row_id, status from floyo_pipeline.dead_letters
where id = $1 for update

-- name: dead_letter_resolve
update floyo_pipeline.dead_letters set status = $2, resolved_at = now() where id = $1 and status = 'open'

-- name: replay_held_leases
select count(*) from floyo_pipeline.checkpoints
where consumer = $1 and lease_owner is not null and lease_expires_at > now()

-- name: replay_from_start
update floyo_pipeline.checkpoints
set position_txid = '0'::xid8, position_id = 0, pending = '{}'::jsonb,
    lease_owner = null, lease_expires_at = null,
    lease_epoch = lease_epoch + 1, updated_at = now()
where consumer = $1

-- name: replay_since_telemetry_events
-- Moves each checkpoint back to just before the first row of its partition created at or after $2.
update floyo_pipeline.checkpoints c
set position_txid = p.txid, position_id = p.id, pending = '{}'::jsonb,
    lease_owner = null, lease_expires_at = null, lease_epoch = c.lease_epoch + 1, updated_at = now()
from (
  select cp.partition, coalesce(prev.txid, '0'::xid8) as txid, coalesce(prev.id, 0) as id
  from floyo_pipeline.checkpoints cp
  left join lateral (
    select t.pipeline_txid as txid, t.id from public.telemetry_events t
    where floyo_pipeline.user_partition(t.user_id) = cp.partition and t.created_at < $2
    order by t.pipeline_txid desc, t.id desc limit 1
  ) prev on true
  where cp.consumer = $1 and cp.stream = 'telemetry_events'
) p
where c.consumer = $1 and c.stream = 'telemetry_events' and c.partition = p.partition
  and (p.txid, p.id) < (c.position_txid, c.position_id)

-- name: replay_since_metrics_log
-- Moves each checkpoint back to just before the first row of its partition created at or after $2.
update floyo_pipeline.checkpoints c
set position_txid = p.txid, position_id = p.id, pending = '{}'::jsonb,
    lease_owner = null, lease_expires_at = null, lease_epoch = c.lease_epoch + 1, updated_at = now()
from (
  select cp.partition, coalesce(prev.txid, '0'::xid8) as txid, coalesce(prev.id, 0) as id
  from floyo_pipeline.checkpoints cp
  left join lateral (
    select t.pipeline_txid as txid, t.id from public.metrics_log t
    where 0 = cp.partition and t.created_at < $2
    order by t.pipeline_txid desc, t.id desc limit 1
  ) prev on true
  where cp.consumer = $1 and cp.stream = 'metrics_log'
) p
where c.consumer = $1 and c.stream = 'metrics_log' and c.partition = p.partition
  and (p.txid, p.id) < (c.position_txid, c.position_id)

