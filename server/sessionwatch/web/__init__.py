"""Quart integration: the extension (the one place that wires objects together), the
server-side session interface, the HTTP routes and the error responses."""
