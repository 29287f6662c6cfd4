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

-- name: is_superuser
select rolsuper from pg_roles where rolname = current_user

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
  order by hashtext(consumer || '/' || stream || '/' || partition::text) # hashtext($1), partition
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
returning c.consumer, c.stream, c.partition, c.lease_epoch, c.position_txid, c.position_id,
          c.pending_txids, c.pending_after_ids

-- name: lease_release
update floyo_pipeline.checkpoints
set lease_owner = null, lease_expires_at = null, updated_at = now()
where consumer = $1 and stream = $2 and partition = $3 and lease_owner = $4 and lease_epoch = $5

-- name: lease_release_all
update floyo_pipeline.checkpoints
set lease_owner = null, lease_expires_at = null, updated_at = now()
where lease_owner = $1

-- name: checkpoint_advance
update floyo_pipeline.checkpoints
set position_txid = $6, position_id = $7, pending_txids = $8, pending_after_ids = $9,
    processed_total = processed_total + $10, updated_at = now()
where consumer = $1 and stream = $2 and partition = $3 and lease_owner = $4 and lease_epoch = $5
  and lease_expires_at > now()

-- name: fetch_telemetry_events
-- Rows after the position, plus rows of pending transactions that have committed since, in
-- (transaction, id) order. Runs first in a REPEATABLE READ transaction so that
-- snapshot_in_progress sees the very same snapshot.
select * from (
  (select id, pipeline_partition, pipeline_txid, user_id, occurred_at, app_id, event_type, file_path,
       duration_ms, metadata, created_at
   from public.telemetry_events
   where pipeline_partition = $1 and (pipeline_txid, id) > ($2::xid8, $3::bigint)
   order by pipeline_txid, id
   limit $4)
  union all
  (select r.*
   from unnest($5::xid8[], $6::bigint[]) as p(txid, after_id)
   cross join lateral (
     select id, pipeline_partition, pipeline_txid, user_id, occurred_at, app_id, event_type, file_path,
       duration_ms, metadata, created_at
     from public.telemetry_events
     where pipeline_partition = $1 and pipeline_txid = p.txid and id > p.after_id
     order by id
     limit $4) r)
) batch
order by pipeline_txid, id
limit $4

-- name: fetch_metrics_log
-- Rows after the position, plus rows of pending transactions that have committed since, in
-- (transaction, id) order. Runs first in a REPEATABLE READ transaction so that
-- snapshot_in_progress sees the very same snapshot.
select * from (
  (select id, pipeline_partition, pipeline_txid, ts, source, metric, created_at
   from public.metrics_log
   where pipeline_partition = $1 and (pipeline_txid, id) > ($2::xid8, $3::bigint)
   order by pipeline_txid, id
   limit $4)
  union all
  (select r.*
   from unnest($5::xid8[], $6::bigint[]) as p(txid, after_id)
   cross join lateral (
     select id, pipeline_partition, pipeline_txid, ts, source, metric, created_at
     from public.metrics_log
     where pipeline_partition = $1 and pipeline_txid = p.txid and id > p.after_id
     order by id
     limit $4) r)
) batch
order by pipeline_txid, id
limit $4

-- name: snapshot_in_progress
select coalesce(array_agg(x order by x), '{}') from pg_snapshot_xip(pg_current_snapshot()) as x

-- name: fetch_row_telemetry_events
select id, pipeline_partition, pipeline_txid, user_id, occurred_at, app_id, event_type, file_path,
       duration_ms, metadata, created_at
from public.telemetry_events where id = $1

-- name: fetch_row_metrics_log
select id, pipeline_partition, pipeline_txid, ts, source, metric, created_at
from public.metrics_log where id = $1

-- name: dead_letter_insert
insert into floyo_pipeline.dead_letters
  (consumer, stream, partition, row_id, error_class, error_message, attempts)
select $1, $2, $3, r.row_id, r.error_class, r.error_message, r.attempts
from unnest($4::bigint[], $5::text[], $6::text[], $7::int[])
  as r(row_id, error_class, error_message, attempts)

-- name: status_telemetry_events
select c.consumer, c.stream, c.partition, c.position_txid::text as position_txid, c.position_id,
       c.processed_total, c.lease_owner, c.lease_expires_at, c.lease_epoch,
       lag.rows as lag_rows,
       coalesce(extract(epoch from now() - lag.oldest), 0)::float8 as lag_seconds
from floyo_pipeline.checkpoints c
cross join lateral (
  select count(*) as rows, min(t.created_at) as oldest
  from public.telemetry_events t
  where t.pipeline_partition = c.partition
    and ((t.pipeline_txid, t.id) > (c.position_txid, c.position_id)
         or exists (select 1 from unnest(c.pending_txids, c.pending_after_ids) as p(txid, after_id)
                    where t.pipeline_txid = p.txid and t.id > p.after_id))
) lag
where c.stream = 'telemetry_events'
order by c.consumer, c.partition

-- name: status_metrics_log
select c.consumer, c.stream, c.partition, c.position_txid::text as position_txid, c.position_id,
       c.processed_total, c.lease_owner, c.lease_expires_at, c.lease_epoch,
       lag.rows as lag_rows,
       coalesce(extract(epoch from now() - lag.oldest), 0)::float8 as lag_seconds
from floyo_pipeline.checkpoints c
cross join lateral (
  select count(*) as rows, min(t.created_at) as oldest
  from public.metrics_log t
  where t.pipeline_partition = c.partition
    and ((t.pipeline_txid, t.id) > (c.position_txid, c.position_id)
         or exists (select 1 from unnest(c.pending_txids, c.pending_after_ids) as p(txid, after_id)
                    where t.pipeline_txid = p.txid and t.id > p.after_id))
) lag
where c.stream = 'metrics_log'
order by c.consumer, c.partition

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
set position_txid = '0'::xid8, position_id = 0, pending_txids = '{}', pending_after_ids = '{}',
    lease_owner = null, lease_expires_at = null,
    lease_epoch = lease_epoch + 1, updated_at = now()
where consumer = $1

-- name: replay_since_telemetry_events
update floyo_pipeline.checkpoints c
set position_txid = p.txid, position_id = p.id, pending_txids = '{}', pending_after_ids = '{}',
    lease_owner = null, lease_expires_at = null, lease_epoch = c.lease_epoch + 1, updated_at = now()
from (
  select cp.partition, coalesce(prev.txid, '0'::xid8) as txid, coalesce(prev.id, 0) as id
  from floyo_pipeline.checkpoints cp
  left join lateral (
    select t.pipeline_txid as txid, t.id from public.telemetry_events t
    where t.pipeline_partition = cp.partition and t.created_at < $2
    order by t.pipeline_txid desc, t.id desc limit 1
  ) prev on true
  where cp.consumer = $1 and cp.stream = 'telemetry_events'
) p
where c.consumer = $1 and c.stream = 'telemetry_events' and c.partition = p.partition
  and (p.txid, p.id) < (c.position_txid, c.position_id)

-- name: replay_since_metrics_log
update floyo_pipeline.checkpoints c
set position_txid = p.txid, position_id = p.id, pending_txids = '{}', pending_after_ids = '{}',
    lease_owner = null, lease_expires_at = null, lease_epoch = c.lease_epoch + 1, updated_at = now()
from (
  select cp.partition, coalesce(prev.txid, '0'::xid8) as txid, coalesce(prev.id, 0) as id
  from floyo_pipeline.checkpoints cp
  left join lateral (
    select t.pipeline_txid as txid, t.id from public.metrics_log t
    where t.pipeline_partition = cp.partition and t.created_at < $2
    order by t.pipeline_txid desc, t.id desc limit 1
  ) prev on true
  where cp.consumer = $1 and cp.stream = 'metrics_log'
) p
where c.consumer = $1 and c.stream = 'metrics_log' and c.partition = p.partition
  and (p.txid, p.id) < (c.position_txid, c.position_id)
