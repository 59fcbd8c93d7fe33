"""Enrollments, lesson progress and reviews."""
