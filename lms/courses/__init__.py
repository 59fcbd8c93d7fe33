"""Courses and their lessons."""
