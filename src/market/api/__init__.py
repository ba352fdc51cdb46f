"""The market API (FastAPI): index reads, blob store, Sign-In with Ethereum for writes.

``market.api.app.create_app`` builds the app; ``market.api.client_auth`` is the client side
of sign-in (imported by the worker without pulling in the server).
"""
