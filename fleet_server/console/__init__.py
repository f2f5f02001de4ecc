"""The operators' web console: server-rendered pages over the services the REST API uses.

:func:`fleet_server.console.routes.install` adds it to the FastAPI app (under
``/console``). Kept import-light: the server config imports :mod:`.settings`.
"""
