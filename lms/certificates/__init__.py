"""Certificates of completion: numbers, PDFs rendered by a job, public verification, Open Badges 3.0."""
