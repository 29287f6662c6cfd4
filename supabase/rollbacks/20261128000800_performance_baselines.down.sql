-- Reverse of 20261128000800_performance_baselines.sql: drop the baseline, rank and spread columns, and
-- keep only the last 40 durations per series, the window the earlier rule reads.

alter table floyo_pipeline.metric_daily drop column if exists m2;

update floyo_pipeline.duration_windows
set durations = durations[cardinality(durations) - 39:]
where cardinality(durations) > 40;

alter table floyo_pipeline.duration_windows
  drop column if exists rank_ties,
  drop column if exists rank_u2,
  drop column if exists baseline_runs;
