"""Live quiz sessions, REST side: create, look up by pin, results (the live part is ``realtime.live``)."""
