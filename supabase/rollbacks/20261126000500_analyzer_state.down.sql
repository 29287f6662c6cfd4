-- Reverse of 20261126000500_analyzer_state.sql: drop the analyzers' state tables.

drop table if exists floyo_pipeline.metric_daily;
drop table if exists floyo_pipeline.duration_windows;
drop table if exists floyo_pipeline.app_workflow_state;
drop table if exists floyo_pipeline.file_pattern_state;
