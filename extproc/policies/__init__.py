"""Policies: what the gateway does to requests and responses. No gRPC or Envoy here."""
