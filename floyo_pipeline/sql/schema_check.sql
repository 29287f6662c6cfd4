-- What `floyo-pipeline validate-schema` reads from the catalogs. Loaded by floyo_pipeline.queries.

-- name: schema_check_public_tables
select c.relname as table_name, c.relrowsecurity as rls
from pg_class c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
order by c.relname

-- name: schema_check_columns
select c.relname as table_name, a.attname as column_name,
       format_type(a.atttypid, a.atttypmod) as pg_type, not a.attnotnull as nullable
from pg_attribute a
join pg_class c on c.oid = a.attrelid
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
  and a.attnum > 0 and not a.attisdropped
order by c.relname, a.attnum

-- name: schema_check_policies
select tablename as table_name, policyname as policy_name, cmd, roles::text[] as roles
from pg_policies
where schemaname = 'public'
order by tablename, policyname

-- name: schema_check_publication_exists
select exists (select 1 from pg_publication where pubname = $1)

-- name: schema_check_publication_tables
select tablename as table_name
from pg_publication_tables
where pubname = $1 and schemaname = 'public'

-- name: schema_check_triggers
select c.relname as table_name, t.tgname as trigger_name, t.tgenabled <> 'D' as enabled,
       (t.tgtype & 1) = 0 as per_statement,
       (t.tgtype & 2) = 0 and (t.tgtype & 64) = 0 as after,
       (t.tgtype & 4) <> 0 as on_insert,
       pn.nspname || '.' || p.proname as function_name
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
join pg_proc p on p.oid = t.tgfoid
join pg_namespace pn on pn.oid = p.pronamespace
where c.relnamespace = 'public'::regnamespace and not t.tgisinternal

-- name: schema_check_private_tables
select c.relname as table_name
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1 and c.relkind in ('r', 'p')

-- name: schema_check_private_schema_exposed
select r.rolname as role_name
from pg_namespace n
cross join pg_roles r
where n.nspname = $1 and r.rolname = any($2::text[])
  and has_schema_privilege(r.oid, n.oid, 'USAGE')
order by r.rolname

-- name: schema_check_anon_table_privileges
select c.relname as table_name
from pg_class c
cross join pg_roles r
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and r.rolname = 'anon'
  and has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
order by c.relname

-- name: schema_check_client_writable_columns
-- Pipeline columns of the streams ($1) that an API role ($3) may insert or update ($2: the columns).
select c.relname as table_name, a.attname as column_name, r.rolname as role_name, p.privilege
from pg_class c
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
cross join pg_roles r
cross join unnest(array['INSERT', 'UPDATE']) as p(privilege)
where c.relnamespace = 'public'::regnamespace and c.relname = any($1::text[])
  and a.attname = any($2::text[]) and r.rolname = any($3::text[])
  and has_column_privilege(r.oid, c.oid, a.attnum, p.privilege)
order by c.relname, a.attname, r.rolname, p.privilege
