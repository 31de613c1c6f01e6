"""The fixture web: an offline stand-in for the internet of image hosts.

Synthetic species photos and irrelevant images (`species`, `irrelevant`), a loopback web server with many
virtual domains and addressable faults (`web`, `config`, `faults`), and a GBIF-shaped export pointing at it
(`gbif_export`). Importing the package is cheap: nothing is rendered or started at import time.
"""

from fixtureweb.config import DomainConfig, Latency, WebConfig, preset
from fixtureweb.content import ImageSpec, media_path
from fixtureweb.encoding import ImageFormat
from fixtureweb.faults import Fault
from fixtureweb.gbif_export import ExportConfig, build_export, plan_export, read_truth
from fixtureweb.irrelevant import IrrelevantKind, render_irrelevant
from fixtureweb.resolver import LoopbackResolver
from fixtureweb.species import Species, SpeciesCatalog, render_species
from fixtureweb.web import FixtureWeb, FixtureWebInfo

__all__ = [
    "DomainConfig", "ExportConfig", "Fault", "FixtureWeb", "FixtureWebInfo", "ImageFormat", "ImageSpec",
    "IrrelevantKind", "Latency", "LoopbackResolver", "Species", "SpeciesCatalog", "WebConfig", "build_export",
    "media_path", "plan_export", "preset", "read_truth", "render_irrelevant", "render_species",
]
