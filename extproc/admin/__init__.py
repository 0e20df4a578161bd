"""The admin HTTP server: health, Prometheus metrics, the audit JSON API and the live
web view of what the gateway decided. It runs inside the ext_proc server's event loop
on its own port, which is never published publicly."""

from extproc.admin.app import AdminServer, create_admin_app

__all__ = ["AdminServer", "create_admin_app"]
