"""``sporeprint`` command groups that drive the services' APIs (one module per group)."""
