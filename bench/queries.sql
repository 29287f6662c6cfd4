-- The benchmark's own statements (bench/queries.py loads them). It runs as the schema's owner.

-- name: create_raw_table
-- The stream's table as it would be without the pipeline: the same columns, constraints, indexes and
-- foreign key, less pipeline_txid (with its index) and the NOTIFY trigger (LIKE copies no triggers).
create table bench_raw (like public.telemetry_events including all);
alter table bench_raw drop column pipeline_txid;
alter table bench_raw add foreign key (user_id) references auth.users (id) on delete cascade;

-- name: drop_raw_table
drop table bench_raw

-- name: insert_unnest
-- {table} is one of the two tables above, named by the benchmark itself.
insert into {table} (user_id, occurred_at, app_id, event_type, file_path, duration_ms, metadata)
select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int[],
                     $7::jsonb[])

-- name: read_raw_table
select * from bench_raw order by id

-- name: truncate_stream
truncate public.telemetry_events

-- name: vacuum_stream
vacuum analyze public.telemetry_events

-- name: seed_users
insert into auth.users (id) select unnest($1::uuid[])

-- name: seed_privacy_prefs
insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled)
select unnest($1::uuid[]), true, true

-- name: seed_allowlist
insert into public.app_allowlist (user_id, app_id, enabled, scope)
select u, a, true, 'metadata_plus_usage' from unnest($1::uuid[]) u, unnest($2::text[]) a

-- name: processed_rows
-- Telemetry rows every consumer has processed (each exactly once, so the sum is exact): the least
-- of the consumers' totals.
select coalesce(min(total), 0) from (
  select sum(processed_total) as total from floyo_pipeline.checkpoints
  where stream = 'telemetry_events' group by consumer
) s

-- name: connections_of_role
-- Client connections only: a parallel query's workers show under the same role but take no
-- connection slot.
select count(*) from pg_stat_activity where usename = $1 and backend_type = 'client backend'

-- name: backend_pid
select pg_backend_pid()

-- name: table_sizes
-- Every table of the given schemas: bytes of the table (heap, TOAST, free space and visibility maps)
-- and of its indexes.
select n.nspname as schema, c.relname as name,
       pg_table_size(c.oid) as table_bytes,
       pg_indexes_size(c.oid) as index_bytes
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and n.nspname = any($1::text[])
order by n.nspname, c.relname

-- name: count_rows
-- {table}: a schema-qualified name from table_sizes, quoted by the benchmark.
select count(*) from {table}

-- name: index_sizes
select i.indexrelid::regclass::text as name, pg_relation_size(i.indexrelid) as bytes
from pg_index i
where i.indrelid = $1::regclass
order by 1

-- name: stream_tables
select stream from floyo_pipeline.streams order by stream
