-- Supabase compatibility for plain Postgres (the embedded default and the tests): what a Supabase
-- project provides before any migration runs, so that the very same migrations in
-- supabase/migrations/ run unchanged here and on a real Supabase project, and fail here where they
-- would fail there. Run by a superuser (Supabase's supabase_admin), once per database, by
-- `floyo-pipeline migrate` and the embedded setup, only when the database has no `auth` schema of
-- its own (or has this bootstrap's, which is then refreshed). Idempotent.
--
-- Reproduced from Supabase's published init scripts: the API roles and `authenticator`; `postgres`
-- (when it is not the superuser running this) as a member of the API roles, with CREATE on the
-- database and on `public`; the default privileges that give anon, authenticated and service_role
-- ALL on every table, sequence and function that `postgres` (or the superuser) creates in `public`;
-- `auth.users`, `auth.uid()`, `auth.role()`, `auth.jwt()`; the `supabase_realtime` publication,
-- owned by `postgres`.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

do $$
begin
  if exists (select 1 from pg_roles where rolname = 'postgres' and not rolsuper) then
    grant anon, authenticated, service_role to postgres;
    grant pg_monitor, pg_read_all_data, pg_signal_backend to postgres;
    execute format('grant all on database %I to postgres', current_database());
    grant usage, create on schema public to postgres;
  end if;
end
$$;

grant usage on schema public to anon, authenticated, service_role;

-- Supabase's defaults: whatever `postgres` or the superuser creates in public is open to the API
-- roles until a migration revokes it (row level security is what protects the rows).
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
do $$
begin
  if exists (select 1 from pg_roles where rolname = 'postgres') and current_user <> 'postgres' then
    alter default privileges for role postgres in schema public
      grant all on tables to anon, authenticated, service_role;
    alter default privileges for role postgres in schema public
      grant all on sequences to anon, authenticated, service_role;
    alter default privileges for role postgres in schema public
      grant all on functions to anon, authenticated, service_role;
    alter default privileges in schema public grant all on tables to postgres;
    alter default privileges in schema public grant all on sequences to postgres;
    alter default privileges in schema public grant all on functions to postgres;
  end if;
end
$$;

create schema if not exists auth;
comment on schema auth is 'floyo-pipeline: Supabase compatibility bootstrap (plain Postgres only)';

create table if not exists auth.users (
  id uuid primary key,
  email text,
  created_at timestamptz not null default now()
);

-- The way Supabase resolves the caller: PostgREST and Realtime put the JWT claims in
-- request.jwt.claims.
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant usage on schema auth to anon, authenticated, service_role;
grant execute on function auth.uid(), auth.role(), auth.jwt() to anon, authenticated, service_role;

do $$
begin
  if exists (select 1 from pg_roles where rolname = 'postgres') then
    grant usage on schema auth to postgres;
    grant all on auth.users to postgres;
  end if;
end
$$;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
  if exists (select 1 from pg_roles where rolname = 'postgres') then
    alter publication supabase_realtime owner to postgres;
  end if;
end
$$;
