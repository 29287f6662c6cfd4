-- Reverses 20261126000200_pipeline_bookkeeping.sql: the worker role's grants and the floyo_pipeline
-- schema with its bookkeeping tables go (checkpoints, leases and dead letters are lost).
--
-- The role floyo_pipeline_worker is left in place on purpose. Roles are cluster-wide, not per
-- database: other databases of the same cluster (a second environment, the test template and its
-- copies) may still grant it privileges, and DROP ROLE fails while any database does; the service's
-- login role is a member of it, and dropping it would silently cut that login off from every other
-- database. An unused NOLOGIN role grants nothing, and the migration only creates it when missing,
-- so re-applying after a rollback works either way.

revoke all on public.telemetry_events, public.metrics_log, public.privacy_prefs, public.app_allowlist,
  public.signal_toggles, public.patterns, public.relationships, public.insights, public.suggestions
  from floyo_pipeline_worker;
revoke usage on schema public from floyo_pipeline_worker;

alter default privileges in schema floyo_pipeline
  revoke select, insert, update, delete on tables from floyo_pipeline_worker;

-- No CASCADE: anything a later migration put in this schema must have been rolled back first, and
-- an error here is better than dropping it unseen.
drop table if exists floyo_pipeline.dead_letters;
drop table if exists floyo_pipeline.replicas;
drop table if exists floyo_pipeline.checkpoints;
drop table if exists floyo_pipeline.streams;
drop function if exists floyo_pipeline.user_partition(uuid);
drop schema if exists floyo_pipeline;
