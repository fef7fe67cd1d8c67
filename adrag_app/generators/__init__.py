"""Ad generators: seed photo + brand image + prompt -> PNG.

``make_generator()`` picks :class:`ReplicateGenerator` (FLUX Kontext multi-image on Replicate)
when ``REPLICATE_API_TOKEN`` is set and the offline :class:`LocalCompositor` otherwise; their
settings are ``load_settings().generator`` (:class:`adrag_assets.settings.GeneratorSettings`).
"""

from adrag_app.generators.base import (
    GeneratedImage,
    GenerationError,
    GenerationFailed,
    GenerationRefused,
    GenerationTimeout,
    GenerationUnavailable,
    Generator,
)
from adrag_app.generators.factory import make_generator
from adrag_app.generators.local import LocalCompositor
from adrag_app.generators.replicate_generator import ReplicateGenerator

__all__ = [
    "GeneratedImage",
    "GenerationError",
    "GenerationFailed",
    "GenerationRefused",
    "GenerationTimeout",
    "GenerationUnavailable",
    "Generator",
    "LocalCompositor",
    "ReplicateGenerator",
    "make_generator",
]
