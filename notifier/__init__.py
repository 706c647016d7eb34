"""notifier: a daemon that warns before API tokens expire."""

__version__ = "0.1.0"
