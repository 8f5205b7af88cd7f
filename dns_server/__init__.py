"""Cluster DNS for Kubernetes: the DNS-Based Service Discovery specification, served from memory."""

__version__ = "0.2.0"
