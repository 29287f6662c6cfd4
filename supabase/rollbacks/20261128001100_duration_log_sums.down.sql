-- Reverse of 20261128001100_duration_log_sums.sql: drop the log sums and bring back the rank
-- statistics' columns, empty (null: the rank rule computes them from the stored durations when it
-- first needs them). The durations keep the layout both rules read.

alter table floyo_pipeline.duration_windows
  drop constraint if exists duration_windows_log_sums,
  drop column if exists recent_log_squares,
  drop column if exists recent_log_sum,
  drop column if exists baseline_log_squares,
  drop column if exists baseline_log_sum,
  add column if not exists rank_u2 integer,
  add column if not exists rank_ties bigint;
