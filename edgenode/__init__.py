"""edgenode: the node daemon, local reconciler, lifecycle workflows, placement and the CLI."""

__version__ = "0.1.0"
