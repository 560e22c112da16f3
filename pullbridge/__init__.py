"""Pullbridge: a git push makes the cluster pull the declared state.

This package holds what the web receiver and the workers share: the
configuration, the Redis key layout, the operator CLI and the local stack.
"""

__version__ = "0.1.0"
