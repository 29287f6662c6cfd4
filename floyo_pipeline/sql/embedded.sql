-- The embedded server's roles, made like a Supabase project's: `supabase_admin` the superuser,
-- `postgres` an owner that is not one. Loaded by floyo_pipeline.queries.
--
-- Every step is safe to repeat and each start checks what is there (embedded_roles_complete), so a
-- first start killed between any two statements is finished by the next one.

-- name: embedded_setup_lock
select pg_advisory_lock(7310002)

-- name: embedded_setup_unlock
select pg_advisory_unlock(7310002)

-- name: embedded_roles_complete
-- The finished set-up: the bootstrap superuser (oid 10) renamed, the owner made with Supabase's
-- attributes, the temporary role gone.
select (select rolname from pg_roles where oid = 10) = 'supabase_admin'
   and exists (
     select 1 from pg_roles
     where rolname = 'postgres' and not rolsuper and rolcreatedb and rolcreaterole and rolcanlogin
       and rolreplication and rolbypassrls)
   and not exists (select 1 from pg_roles where rolname = 'floyo_cluster_setup')

-- name: embedded_bootstrap_superuser
select rolname from pg_roles where oid = 10

-- name: embedded_role_exists
select exists (select 1 from pg_roles where rolname = $1)

-- name: embedded_cluster_is_fresh
-- Nothing but initdb's databases, and nothing of ours in `postgres`: safe to hand its bootstrap
-- superuser a new name.
select not exists (select 1 from pg_database where datname not in ('postgres', 'template0', 'template1'))
   and not exists (select 1 from pg_namespace where nspname in ('auth', 'floyo_pipeline', 'supabase_migrations'))

-- name: embedded_create_setup_role
create role floyo_cluster_setup superuser login

-- name: embedded_rename_bootstrap_superuser
alter role postgres rename to supabase_admin

-- name: embedded_create_owner
-- Supabase's `postgres`: not a superuser, may create databases and roles, bypasses row security.
create role postgres nosuperuser createdb createrole login replication bypassrls

-- name: embedded_owner_attributes
alter role postgres nosuperuser createdb createrole login replication bypassrls

-- name: embedded_drop_setup_role
drop role if exists floyo_cluster_setup
