"""The browser side of darkroom: the studio, the client's gallery and the operations page."""

from web.app import create_app
from web.context import WebContext

__all__ = ["WebContext", "create_app"]
