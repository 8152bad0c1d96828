"""The delivery state: what Event Grid and the Log Analytics follower told us about each message, in Table Storage.

events        Event Grid email events -> typed reports; the webhook body as the Functions host checks it
rules         what final, resolved, bounced and a believable time mean (state, insights and tracing)
partition     one message's state (message entity + one per recipient) and the monotone, idempotent merges
journal       observations as they arrive, many to an entity, concurrent writers sharing requests
store         the partitions (ETag-conditioned writes) and, for readers, the journal merged in
ingest        events -> the journal; the fold: journal -> partitions, changes handed to push
folds         the fold scaled out: one queued request per journal write and shard, one folder per shard (lease)
follower      the Log Analytics (or embedded store) rows since a watermark -> the journal
sample_events Event Grid events derived from the embedded store's rows (local runs, benchmarks)
"""
