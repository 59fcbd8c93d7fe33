"""Analytics for students, instructors and admins (``/api/v1/analytics/...``)."""
