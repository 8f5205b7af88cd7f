"""Cluster DNS for Kubernetes: the Kubernetes DNS specification answered from the API or manifests, the rest forwarded."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dns-server")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
