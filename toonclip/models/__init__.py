"""Generator networks: one factory resolves architecture and encoder names."""

from toonclip.models.factory import (
    ARCHITECTURES,
    Generator,
    build_generator,
    count_parameters,
    generator_from_config,
    resolve_arch,
    resolve_encoder,
)

__all__ = [
    "ARCHITECTURES",
    "Generator",
    "build_generator",
    "count_parameters",
    "generator_from_config",
    "resolve_arch",
    "resolve_encoder",
]
