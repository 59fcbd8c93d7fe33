"""The learning platform: domain, HTTP API, data layer, config and CLI."""

__version__ = "0.1.0"
