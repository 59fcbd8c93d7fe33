"""Uploaded files: streaming uploads with content sniffing, downloads from any instance."""
