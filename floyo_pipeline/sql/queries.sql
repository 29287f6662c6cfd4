-- Every query the engine runs, by name, except those against a stream, which are rendered for each
-- stream from templates/stream.sql (floyo_pipeline/engine/streams.py). Loaded by floyo_pipeline.queries.

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

-- name: replica_forget_predecessors
-- Earlier incarnations of replica $1 (owners '$1#...' other than $2) are dead: this process has their name.
delete from floyo_pipeline.replicas
where left(replica_id, length($1) + 1) = $1 || '#' and replica_id <> $2

-- name: lease_claim
-- Free or expired leases, and, when $5 names this replica, the live leases of its earlier incarnations.
with candidates as (
  select consumer, stream, partition
  from floyo_pipeline.checkpoints
  where consumer = any($2::text[])
    and (lease_owner is null or lease_expires_at is null or lease_expires_at < now()
         or ($5::text is not null and left(lease_owner, length($5) + 1) = $5 || '#' and lease_owner <> $1))
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

-- name: dead_letter_insert
insert into floyo_pipeline.dead_letters
  (consumer, stream, partition, row_id, error_class, error_message, attempts)
select r.consumer, $1, r.partition, r.row_id, r.error_class, r.error_message, r.attempts
from unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::int[])
  as r(consumer, partition, row_id, error_class, error_message, attempts)

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

-- name: replay_has_checkpoints
select exists (select from floyo_pipeline.checkpoints where consumer = $1)

-- name: replay_held_leases
select count(*) from floyo_pipeline.checkpoints
where consumer = $1 and lease_owner is not null and lease_expires_at > now()

-- name: replay_from_start
update floyo_pipeline.checkpoints
set position_txid = '0'::xid8, position_id = 0, pending = '{}'::jsonb,
    lease_owner = null, lease_expires_at = null,
    lease_epoch = lease_epoch + 1, updated_at = now()
where consumer = $1

-- name: compat_state
-- Whether the database has an `auth` schema, whether the compatibility bootstrap made it (its
-- comment; an older bootstrap left none, but never made Supabase Auth's auth.refresh_tokens), and
-- whether the current role may (re)run the bootstrap.
select n.oid is not null as has_auth,
       coalesce(obj_description(n.oid, 'pg_namespace') like 'floyo-pipeline: Supabase compatibility%', false)
         or (n.oid is not null and to_regclass('auth.refresh_tokens') is null) as ours,
       (select rolsuper from pg_roles where rolname = current_user) as superuser
from (select 1) one
left join pg_namespace n on n.nspname = 'auth'

-- name: realtime_published_streams
-- Which of the streams ($3) of schema $2 are in the publication $1 (Realtime sends nothing of the others).
select tablename as table_name
from pg_publication_tables
where pubname = $1 and schemaname = $2 and tablename = any($3::text[])
