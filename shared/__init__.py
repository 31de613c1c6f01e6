"""The sporeprint contract: settings, schemas, object storage, manifests, queue helpers.

Every service imports this package; nothing in it imports a service.
"""
