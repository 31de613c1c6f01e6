"""The web console: one page over the four services' APIs (``sporeprint console``)."""
