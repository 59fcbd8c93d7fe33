"""HTML pages: the landing page and the pages the account emails link to (aiohttp-jinja2)."""
