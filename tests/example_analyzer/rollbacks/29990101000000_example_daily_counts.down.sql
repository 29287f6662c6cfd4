-- Reverse of 29990101000000_example_daily_counts.sql.
drop table if exists floyo_pipeline.example_daily_counts;
