-- Dead letters: written in a batch's transaction, listed, retried and discarded by operators.

-- name: dead_letter_insert
insert into floyo_pipeline.dead_letters
  (consumer, stream, partition, row_id, error_class, error_message, attempts)
select r.consumer, $1, r.partition, r.row_id, r.error_class, r.error_message, r.attempts
from unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[], $7::int[])
  as r(consumer, partition, row_id, error_class, error_message, attempts)

-- name: dead_letter_counts
select consumer, stream, status, count(*) as n
from floyo_pipeline.dead_letters group by consumer, stream, status order by consumer, stream, status

-- name: dead_letter_list
select id, consumer, stream, partition, row_id, error_class, error_message, attempts, status, created_at,
       resolved_at
from floyo_pipeline.dead_letters
where ($1::text is null or status = $1)
order by id

-- name: dead_letter_get
select id, consumer, stream, partition, row_id, status from floyo_pipeline.dead_letters
where id = $1 for update

-- name: dead_letter_resolve
update floyo_pipeline.dead_letters set status = $2, resolved_at = now() where id = $1 and status = 'open'
