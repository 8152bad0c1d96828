"""The delivery state: what Event Grid and the Log Analytics follower told us about each message, in Table Storage.

events        Event Grid email events -> typed reports; the webhook body as the Functions host checks it
store         one partition per message: the message entity and one per recipient; monotone merges
ingest        reports -> the store, grouped by message, batched
follower      the Log Analytics (or embedded store) rows since a watermark -> the store
trace         the trace use case answered from the state first
subscriptions webhook subscriptions and their outbox (signed, retried POSTs)
sample_events Event Grid events derived from the embedded store's rows (local runs, benchmarks)
"""
