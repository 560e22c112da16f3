"""CLI verbs, one module per area; see pullbridge.cli."""
