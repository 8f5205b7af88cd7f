"""Cluster DNS for Kubernetes: the DNS-Based Service Discovery specification, served from memory."""
