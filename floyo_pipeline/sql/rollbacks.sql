-- Queries of `floyo-pipeline migrate --down-to`. Loaded by floyo_pipeline.queries.

-- name: applied_migrations_named
select version, name from supabase_migrations.schema_migrations order by version

-- name: forget_migration
delete from supabase_migrations.schema_migrations where version = $1
