"""shipper: a Kubernetes log shipper for Loki that never loses a line."""

__version__ = "0.1.0"
