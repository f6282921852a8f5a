"""Parallelism: the device mesh and the logical-axis sharding rules, and joining several processes."""
from mmjax.parallel import distributed, sharding

__all__ = ["distributed", "sharding"]
