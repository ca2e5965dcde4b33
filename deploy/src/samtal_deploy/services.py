"""The platform's services, as their own packages declare them.

Each service's pyproject.toml names its `ServiceDefinition` in the entry-point group
`samtal.services`; that is the only list of services: a new service appears in compose,
Kubernetes, the gateway, the settings reference and `make run` by declaring one.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from chassis.app import ServiceDefinition

GROUP = "samtal.services"

# Sorted by name so generated files do not depend on installation order.
SERVICES: tuple[str, ...] = tuple(sorted({ep.name for ep in entry_points(group=GROUP)}))


@cache
def definition(service: str) -> ServiceDefinition:
    """The service's DEFINITION (imports the service)."""
    (point,) = entry_points(group=GROUP, name=service)
    loaded = point.load()
    if not isinstance(loaded, ServiceDefinition) or loaded.name != service:
        raise TypeError(f"entry point {point.value} is not the ServiceDefinition of {service}")
    return loaded
