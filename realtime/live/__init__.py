"""Live quiz sessions: the store in Redis, the session actors and the ``/live`` namespace."""
