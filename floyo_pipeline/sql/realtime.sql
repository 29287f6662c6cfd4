-- What the Realtime wake-up source asks the database (floyo_pipeline/engine/realtime.py).

-- name: realtime_published_streams
-- Which of the streams ($3) of schema $2 are in the publication $1 (Realtime sends nothing of the others).
select tablename as table_name
from pg_publication_tables
where pubname = $1 and schemaname = $2 and tablename = any($3::text[])
