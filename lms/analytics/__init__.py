"""Analytics for students, instructors and admins (the Analytics section of API.md)."""
