"""The local stand-in for the Azure Functions host (dev only; never deployed)."""

from tools.devhost.host import DevHost, HostConfigError, Keys

__all__ = ["DevHost", "HostConfigError", "Keys"]
