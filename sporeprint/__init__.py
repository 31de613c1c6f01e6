"""sporeprint: the command line that ties the services together (``sporeprint --help``)."""
