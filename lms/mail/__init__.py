"""Transactional email: jinja2 templates, SMTP (or a folder in development), the email log.

The ``send_email`` job (``jobs/tasks/email.py``) is the only caller in the
platform; domain code enqueues it after its transaction commits.
"""
