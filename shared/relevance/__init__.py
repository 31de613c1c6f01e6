"""The relevance model shared by the curator and the inference service (see :mod:`shared.relevance.gate`)."""
