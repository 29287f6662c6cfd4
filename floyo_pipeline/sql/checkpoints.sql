-- Checkpoints, leases and live replicas: the queries of floyo_pipeline/engine/checkpoints.py only.

-- name: ensure_checkpoints
insert into floyo_pipeline.checkpoints (consumer, stream, partition)
select $1, s.stream, p
from floyo_pipeline.streams s, generate_series(0, s.partitions - 1) as p
where s.stream = $2
on conflict do nothing

-- name: replica_heartbeat
insert into floyo_pipeline.replicas (replica_id, expires_at)
values ($1, now() + make_interval(secs => $2))
on conflict (replica_id) do update set expires_at = excluded.expires_at

-- name: replica_remove
delete from floyo_pipeline.replicas where replica_id = $1

-- name: replicas_live
select count(*) from floyo_pipeline.replicas where expires_at > now()

-- name: lease_total
select count(*) from floyo_pipeline.checkpoints where consumer = any($1::text[])

-- name: lease_renew
update floyo_pipeline.checkpoints
set lease_expires_at = now() + make_interval(secs => $2)
where lease_owner = $1 and lease_expires_at > now()
returning consumer, stream, partition, lease_epoch

-- name: replica_forget_predecessors
-- Earlier incarnations of replica $1 (owners '$1#...' other than $2) are dead: this process has their name.
delete from floyo_pipeline.replicas
where left(replica_id, length($1) + 1) = $1 || '#' and replica_id <> $2

-- name: lease_claim
-- Free or expired leases, and, when $5 names this replica, the live leases of its earlier incarnations.
with candidates as (
  select consumer, stream, partition
  from floyo_pipeline.checkpoints
  where consumer = any($2::text[])
    and (lease_owner is null or lease_expires_at is null or lease_expires_at < now()
         or ($5::text is not null and left(lease_owner, length($5) + 1) = $5 || '#' and lease_owner <> $1))
  -- By partition first, so that a replica tends to hold every consumer of a partition and reads
  -- its rows once for all of them.
  order by hashtext(stream || '/' || partition::text) # hashtext($1), stream, partition, consumer
  limit $4
  for update skip locked
)
update floyo_pipeline.checkpoints c
set lease_owner = $1,
    lease_epoch = c.lease_epoch + 1,
    lease_expires_at = now() + make_interval(secs => $3),
    updated_at = now()
from candidates
where c.consumer = candidates.consumer and c.stream = candidates.stream and c.partition = candidates.partition
returning c.consumer, c.stream, c.partition, c.lease_epoch, c.position_txid, c.position_id, c.pending

-- name: lease_release
update floyo_pipeline.checkpoints
set lease_owner = null, lease_expires_at = null, updated_at = now()
where consumer = $1 and stream = $2 and partition = $3 and lease_owner = $4 and lease_epoch = $5

-- name: lease_release_all
update floyo_pipeline.checkpoints
set lease_owner = null, lease_expires_at = null, updated_at = now()
where lease_owner = $1

-- name: checkpoint_advance
-- Advances cursors of one stream; fenced: only where this replica still holds the lease at the
-- epoch it claimed (fewer rows updated than given means a lease was lost and nothing may commit).
update floyo_pipeline.checkpoints c
set position_txid = u.position_txid, position_id = u.position_id, pending = u.pending,
    processed_total = c.processed_total + u.processed, updated_at = now()
from unnest($3::text[], $4::int[], $5::bigint[], $6::xid8[], $7::bigint[], $8::jsonb[], $9::bigint[])
  as u(consumer, partition, epoch, position_txid, position_id, pending, processed)
where c.stream = $1 and c.consumer = u.consumer and c.partition = u.partition
  and c.lease_owner = $2 and c.lease_epoch = u.epoch and c.lease_expires_at > now()
