"""``glovefaiss serve``: indexes as a long-lived HTTP service (needs the ``serve`` extra: starlette, uvicorn).

``create_app`` returns an ASGI app for any ASGI server; ``run`` serves it with uvicorn.
"""

from .app import DEFAULT_LIMITS, Limits, Service, create_app, run

__all__ = ["DEFAULT_LIMITS", "Limits", "Service", "create_app", "run"]
