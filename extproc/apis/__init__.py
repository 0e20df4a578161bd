"""Provider API knowledge: typed models, serializers and stream validators.

Submodules are imported explicitly (``extproc.apis.anthropic``, ``extproc.apis.openai``)
so that importing this package stays cheap and free of pipeline/server code.
"""
