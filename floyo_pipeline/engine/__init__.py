"""The stream-processing engine: cursors, leases, batches, wake-ups. Consumers never import this."""
