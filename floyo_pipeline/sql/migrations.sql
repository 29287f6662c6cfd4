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

-- name: migrate_lock
select pg_advisory_lock(7310001)

-- name: migrate_unlock
select pg_advisory_unlock(7310001)

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
