-- Migrations (floyo_pipeline/migrations.py): tracking, the lock, the compatibility bootstrap's state.

-- name: ensure_migrations_table
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text

-- name: applied_migrations
select version from supabase_migrations.schema_migrations order by version

-- name: record_migration
insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)

-- name: migrate_lock_ensure
-- The migrator's lock row, beside the tracking table, in a schema no API role has a privilege on
-- (floyo_pipeline/migration_lock.py). DO NOTHING never waits for the session holding the row.
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.floyo_migrate_lock (name text primary key);
insert into supabase_migrations.floyo_migrate_lock (name) values ('migrate') on conflict (name) do nothing

-- name: migrate_lock_take
select name from supabase_migrations.floyo_migrate_lock where name = 'migrate' for update

-- name: migrate_lock_holders
-- The sessions the waiting lock connection (pid $1) waits for.
select a.pid, a.usename, a.application_name, a.client_addr::text as client_addr,
       extract(epoch from now() - a.xact_start)::float8 as open_seconds
from pg_stat_activity a
where a.pid = any(pg_blocking_pids($1))
order by a.pid

-- name: session_lock_timeout
select set_config('lock_timeout', $1, false)

-- name: session_lock_timeout_get
select current_setting('lock_timeout')

-- name: ensure_service_login_role
do $$ begin
  if not exists (select 1 from pg_roles where rolname = '$role') then
    create role $role login in role floyo_pipeline_worker;
  end if;
end $$

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
