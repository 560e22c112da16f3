"""The Flask receiver: verifies git host webhooks and queues syncs."""
