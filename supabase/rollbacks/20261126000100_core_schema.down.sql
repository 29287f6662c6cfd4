-- Reverses 20261126000100_core_schema.sql: drops the streams, the privacy tables and the outputs,
-- with all their rows. auth.users and the compatibility bootstrap are not part of this migration.

drop table if exists public.suggestions;
drop table if exists public.insights;
drop table if exists public.relationships;
drop table if exists public.patterns;
drop table if exists public.signal_toggles;
drop table if exists public.app_allowlist;
drop table if exists public.privacy_prefs;
drop table if exists public.metrics_log;
drop table if exists public.telemetry_events;
