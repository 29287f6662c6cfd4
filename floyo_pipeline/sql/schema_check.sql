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

-- name: schema_check_table_privileges
-- Which of the table privileges in $2 the role $1 holds on each public table.
select c.relname as table_name, p.privilege
from pg_class c
cross join unnest($2::text[]) as p(privilege)
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
  and has_table_privilege($1, c.oid, p.privilege)
order by c.relname, p.privilege

-- name: schema_check_api_sequence_privileges
-- Sequences of public tables (identity and serial) that one of the roles in $1 may use, read or set.
select t.relname as table_name, s.relname as sequence_name, r.rolname as role_name
from pg_class s
join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = s.oid
                and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
join pg_class t on t.oid = d.refobjid
cross join pg_roles r
where s.relkind = 'S' and s.relnamespace = 'public'::regnamespace and r.rolname = any($1::text[])
  and has_sequence_privilege(r.oid, s.oid, 'USAGE, SELECT, UPDATE')
order by t.relname, s.relname, r.rolname

-- name: schema_check_mutable_search_path
-- Supabase's advisor (function_search_path_mutable): functions of the schemas in $1, not part of
-- an extension, without a fixed search_path.
select n.nspname as schema_name, p.proname as function_name,
       pg_get_function_identity_arguments(p.oid) as arguments
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname = any($1::text[])
  and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
  and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) as c where c like 'search_path=%')
order by 1, 2, 3

-- name: schema_check_unindexed_foreign_keys
-- Supabase's advisor (unindexed_foreign_keys): foreign keys of tables in the schemas in $1 whose
-- columns are not the leading columns of a valid index.
select n.nspname as schema_name, c.relname as table_name, k.conname as constraint_name
from pg_constraint k
join pg_class c on c.oid = k.conrelid
join pg_namespace n on n.oid = c.relnamespace
where k.contype = 'f' and n.nspname = any($1::text[])
  and not exists (
    select 1 from pg_index i
    where i.indrelid = k.conrelid and i.indisvalid
      and (string_to_array(i.indkey::text, ' ')::smallint[])[1:cardinality(k.conkey)] = k.conkey
  )
order by 1, 2, 3
