"""The explorer: server-rendered pages over the market index, served by the API.

``router`` holds every page (``/explorer…``), excluded from the OpenAPI schema; templates
and the one stylesheet and script live beside this file. See docs/explorer.md.
"""

from market.api.explorer.routes import router

__all__ = ["router"]
