"""Core: pure rules and formats (tokens, tabs, origins, policy, wire events, settings,
errors, device descriptions). No I/O, no Quart, no Redis."""
