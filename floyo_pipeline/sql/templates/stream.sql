-- Every query the engine runs against a stream, written once and rendered for each stream declared in
-- floyo_pipeline/engine/streams.py. Placeholders: {table} (public.<stream>), {partition} (the
-- partition expression over the alias t), {row_bytes} (the row's payload size over t, without
-- reading toasted values where it can), {columns} (the row's columns over the alias r, decoded safely:
-- timestamps out of Python's range and payloads of oversized rows come back null).
--
-- Reads see only rows whose transaction id is below the snapshot's xmax: every honest row is, so a
-- row with a forged future pipeline_txid can never move a cursor past other users' rows.
-- A row larger than the per-row limit comes back with its keys only (pipeline_readable false), to be
-- dead-lettered; it counts 64 bytes against the batch's budget, like every row's fixed part.

-- name: read
-- A batch read, which fetch_forward and fetch_pending below fill in with the rows they select and
-- their parameters' places: those rows in (transaction, id) order, up to the row limit;
-- pipeline_fits is false from the first row past the byte budget on (the first row always fits); a
-- row over the per-row limit comes back with its keys only. Also the transactions open in this
-- statement's snapshot (in_progress); with no rows, one row of nulls carries it.
select s.in_progress, {columns}, r.pipeline_bytes, r.pipeline_readable, r.pipeline_fits
from (select coalesce(array_agg(x), '{{}}') as in_progress from pg_snapshot_xip(pg_current_snapshot()) as x) s
left join lateral (
  select m.*, sum(m.pipeline_load) over (order by m.pipeline_txid, m.id) - m.pipeline_load < {budget}
           as pipeline_fits
  from (
    select l.*, l.pipeline_bytes <= {row_limit} as pipeline_readable,
           case when l.pipeline_bytes <= {row_limit} then l.pipeline_bytes else 0 end + 64 as pipeline_load
    from (
      select t.*, {partition} as pipeline_partition, {row_bytes} as pipeline_bytes
      from {table} t
      where {where}
      order by t.pipeline_txid, t.id
      limit {limit}
    ) l
  ) m
) r on true
order by r.pipeline_txid, r.id

-- name: fetch_forward
-- The next rows after the reader's positions, of the partitions it leases: $1/$2 the smallest
-- position, $3 the partitions, $4/$5 each partition's position (indexed by partition + 1), $6 the row
-- limit, $7 the byte budget, $8 the per-row byte limit.
(t.pipeline_txid, t.id) > ($1::xid8, $2::bigint)
  and t.pipeline_txid < pg_snapshot_xmax(pg_current_snapshot())
  and {partition} = any($3::int[])
  and (t.pipeline_txid, t.id) > (($4::xid8[])[{partition} + 1], ($5::bigint[])[{partition} + 1])

-- name: fetch_pending
-- Rows of transactions that were still open when the cursor passed them ($1), of the reader's
-- partitions ($2); the caller keeps those after each partition's pending row id. $3 the row limit,
-- $4 the byte budget, $5 the per-row byte limit.
t.pipeline_txid = any($1::xid8[]) and {partition} = any($2::int[])

-- name: fetch_row
-- One row by id ($1), decoded as the batch reads do; $2 the per-row byte limit.
select {columns}, r.pipeline_bytes, r.pipeline_readable, r.pipeline_fits
from (
  select l.*, l.pipeline_bytes <= $2 as pipeline_readable, true as pipeline_fits
  from (
    select t.*, {partition} as pipeline_partition, {row_bytes} as pipeline_bytes
    from {table} t
    where t.id = $1
  ) l
) r

-- name: status
-- Lag per checkpoint: rows after its position (one scan from the smallest position per consumer).
with cp as (
  select * from floyo_pipeline.checkpoints where stream = '{stream}'
), lag as (
  select cp.consumer, cp.partition, count(*) as rows, min(t.created_at) as oldest
  from {table} t
  join cp on cp.partition = {partition}
         and (t.pipeline_txid, t.id) > (cp.position_txid, cp.position_id)
  where t.pipeline_txid >= (select min(position_txid) from cp)
  group by cp.consumer, cp.partition
)
select cp.consumer, cp.stream, cp.partition, cp.position_txid::text as position_txid, cp.position_id,
       cp.processed_total, cp.lease_owner, cp.lease_expires_at, cp.lease_epoch,
       coalesce(lag.rows, 0) as lag_rows,
       coalesce(extract(epoch from now() - lag.oldest), 0)::float8 as lag_seconds
from cp left join lag using (consumer, partition)
order by cp.consumer, cp.partition

-- name: replay_since
-- Moves each checkpoint of consumer $1 back to just before the first row of its partition created at
-- or after $2.
update floyo_pipeline.checkpoints c
set position_txid = p.txid, position_id = p.id, pending = '{{}}'::jsonb,
    lease_owner = null, lease_expires_at = null, lease_epoch = c.lease_epoch + 1, updated_at = now()
from (
  select cp.partition, coalesce(prev.txid, '0'::xid8) as txid, coalesce(prev.id, 0) as id
  from floyo_pipeline.checkpoints cp
  left join lateral (
    select t.pipeline_txid as txid, t.id from {table} t
    where {partition} = cp.partition and t.created_at < $2
    order by t.pipeline_txid desc, t.id desc limit 1
  ) prev on true
  where cp.consumer = $1 and cp.stream = '{stream}'
) p
where c.consumer = $1 and c.stream = '{stream}' and c.partition = p.partition
  and (p.txid, p.id) < (c.position_txid, c.position_id)
