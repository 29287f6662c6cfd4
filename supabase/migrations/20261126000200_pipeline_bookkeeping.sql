-- The service's own bookkeeping, in a schema never exposed to anon or authenticated, and the
-- least-privileged role the service logs in through (a LOGIN role granted floyo_pipeline_worker).

create schema if not exists floyo_pipeline;
revoke all on schema floyo_pipeline from public;

create table if not exists floyo_pipeline.streams (
  stream text primary key,
  partitions integer not null check (partitions between 1 and 1024)
);

insert into floyo_pipeline.streams (stream, partitions)
values ('telemetry_events', 64), ('metrics_log', 1)
on conflict (stream) do nothing;

-- The partition of a user: a stable hash into 64 partitions, the last byte of the uuid (uniform for
-- random uuids). Nothing is stored. A fixed search_path (Supabase's advisor asks for one) keeps
-- Postgres from inlining the function, so the engine's hot queries spell out the same expression
-- (floyo_pipeline/sql/queries.sql, checked against this function by the tests).
create or replace function floyo_pipeline.user_partition(user_id uuid) returns integer
language sql immutable parallel safe
set search_path = ''
as $$ select get_byte(uuid_send(user_id), 15) % 64 $$;

-- One row per (consumer, stream, partition): the cursor and the lease that fences it.
-- The cursor is (position, pending): every row at or before position_txid/position_id has been
-- processed, except rows of the pending transactions after their pending_after_ids.
create table if not exists floyo_pipeline.checkpoints (
  consumer text not null,
  stream text not null references floyo_pipeline.streams (stream),
  partition integer not null check (partition >= 0),
  position_txid xid8 not null default '0'::xid8,
  position_id bigint not null default 0,
  -- Transactions that were still open when the cursor passed their id, each with the last row id
  -- of it already processed ({"txid": id}): their rows are read when they commit.
  pending jsonb not null default '{}'::jsonb check (jsonb_typeof(pending) = 'object'),
  processed_total bigint not null default 0,
  lease_owner text,
  lease_expires_at timestamptz,
  lease_epoch bigint not null default 0,
  updated_at timestamptz not null default now(),
  primary key (consumer, stream, partition)
);

create index if not exists checkpoints_owner_idx on floyo_pipeline.checkpoints (lease_owner);
-- Covers the foreign key to streams (Supabase's advisor flags foreign keys without an index).
create index if not exists checkpoints_stream_idx on floyo_pipeline.checkpoints (stream);

-- Live replicas, for a fair share of the leases.
create table if not exists floyo_pipeline.replicas (
  replica_id text primary key,
  started_at timestamptz not null default now(),
  expires_at timestamptz not null
);

create table if not exists floyo_pipeline.dead_letters (
  id bigint generated always as identity primary key,
  consumer text not null,
  stream text not null,
  partition integer not null,
  row_id bigint not null,
  error_class text not null,
  error_message text not null,
  attempts integer not null check (attempts >= 1),
  status text not null default 'open' check (status in ('open', 'retried', 'discarded')),
  created_at timestamptz not null default now(),
  resolved_at timestamptz
);

create index if not exists dead_letters_open_idx
  on floyo_pipeline.dead_letters (consumer, stream) where status = 'open';

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'floyo_pipeline_worker') then
    create role floyo_pipeline_worker nologin;
  end if;
end
$$;

grant usage on schema floyo_pipeline to floyo_pipeline_worker;
grant execute on function floyo_pipeline.user_partition(uuid) to floyo_pipeline_worker;
grant select, insert, update, delete on all tables in schema floyo_pipeline to floyo_pipeline_worker;
alter default privileges in schema floyo_pipeline
  grant select, insert, update, delete on tables to floyo_pipeline_worker;
grant usage on schema public to floyo_pipeline_worker;
grant select, delete on public.telemetry_events to floyo_pipeline_worker;
grant select, insert on public.metrics_log to floyo_pipeline_worker;
grant select on public.privacy_prefs, public.app_allowlist, public.signal_toggles to floyo_pipeline_worker;
grant select, insert, update, delete
  on public.patterns, public.relationships, public.insights, public.suggestions
  to floyo_pipeline_worker;
