"""One dialect per API: everything the API's wire format decides.

A `Dialect` (`base.py`) holds one API's paths, request texts, error bodies (immediate
and in-stream), terminators, stream and message engines and stream validator; one is
chosen per request by `registry.py` and carried with it. Each API is a package here
(`anthropic/`, `openai/`); nothing outside this package branches on which API a
request speaks.
"""
