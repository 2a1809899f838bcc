"""OpenAI Batch-style path for deferrable work: a JSONL file of chat-completion requests in, a JSONL file of
results out, every line through the same :class:`~sovrouter.pipeline.Pipeline` (policy, cache, routing), routed
by :class:`~sovrouter.batch.router.DeferrableRouter` onto the cheapest allowed capacity. See
docs/batching-and-speculation.md."""
