"""Ad generators: seed photo + brand image + prompt -> PNG.

``make_generator()`` picks :class:`ReplicateGenerator` (FLUX Kontext multi-image on Replicate)
when ``REPLICATE_API_TOKEN`` is set and the offline :class:`LocalCompositor` otherwise.
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
from adrag_app.generators.local import LocalCompositor, headline_from_prompt
from adrag_app.generators.replicate_generator import ReplicateGenerator
from adrag_app.generators.settings import (
    DEFAULT_REPLICATE_MODEL,
    GeneratorSettings,
    load_generator_settings,
)

__all__ = [
    "DEFAULT_REPLICATE_MODEL",
    "GeneratedImage",
    "GenerationError",
    "GenerationFailed",
    "GenerationRefused",
    "GenerationTimeout",
    "GenerationUnavailable",
    "Generator",
    "GeneratorSettings",
    "LocalCompositor",
    "ReplicateGenerator",
    "headline_from_prompt",
    "load_generator_settings",
    "make_generator",
]
