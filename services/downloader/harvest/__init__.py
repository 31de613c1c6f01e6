"""The asynchronous harvester: fetch a manifest's images politely and safely into object storage."""
