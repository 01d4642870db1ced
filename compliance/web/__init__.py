"""`compliance serve`: a read-only web view of the store for validators, auditors and committees.

An ASGI app (Starlette, served by uvicorn; the optional extra ``compliance[web]``) that calls the
services, renders plain contexts with the pack's Jinja2 environment, filters and SVG charts, and
never touches the ORM. It runs no JavaScript at all, opens the database read-only and answers
only GET and HEAD. Layout: ``config`` (settings, the read-only URL), ``params`` (validation of
every query parameter), ``pages`` (page contexts from services), ``app`` (routes, security).
"""
