-- The nightly privacy cleanup (floyo_pipeline.retention), written once and rendered for each table
-- retention cleans: the streams declared in floyo_pipeline/engine/streams.py and the tables the
-- consumers declare (`Consumer.tables`) with an age column. Placeholders: {table} (schema-qualified),
-- {age} (the event-time column), {user} (the row's user over the alias t, or null), {expired} (the
-- `expired` predicate below, rendered). $1 = the retention for users without privacy_prefs;
-- rows without a user (global insights) get that default too. `expired`: what the user's
-- data_retention_days no longer allows, measured against the wall clock (read from the pipeline's copy
-- of privacy_prefs, which no user can lock).

-- name: expired
t.{age} < now() - make_interval(days => coalesce(
  (select p.data_retention_days from floyo_pipeline.user_settings p where p.user_id = {user}), $1))

-- name: count
select count(*) from {table} t where {expired}

-- name: delete
with gone as (delete from {table} t where {expired} returning 1)
select count(*) from gone
