"""The deployable service (``sessionwatch serve``): the CLI, the service app, operations
endpoints, Prometheus metrics and the demo. The library never imports this package."""
