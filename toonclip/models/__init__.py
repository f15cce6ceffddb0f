"""Generator networks: one factory resolves architecture and encoder names."""

from toonclip.models.factory import (
    ARCHITECTURES,
    Generator,
    build_generator,
    count_parameters,
    resolve_arch,
    resolve_encoder,
)

__all__ = [
    "ARCHITECTURES",
    "Generator",
    "build_generator",
    "count_parameters",
    "resolve_arch",
    "resolve_encoder",
]
