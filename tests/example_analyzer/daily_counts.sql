-- The example analyzer's queries (tests/example_analyzer/daily_counts.py).

-- name: example_daily_counts_add
-- Adds each (user $1, day $2)'s events $3; the day's last event time $4 is what retention ages it by.
insert into floyo_pipeline.example_daily_counts as d (user_id, day, events, last_at)
select * from unnest($1::uuid[], $2::date[], $3::bigint[], $4::timestamptz[])
on conflict (user_id, day) do update
set events = d.events + excluded.events, last_at = greatest(d.last_at, excluded.last_at)
