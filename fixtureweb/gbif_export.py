"""A GBIF-shaped Darwin Core Archive pointing at the fixture web, with its ground truth.

The zip holds `occurrence.txt` (core, one row per observation), `multimedia.txt` (the 15 columns of GBIF's
multimedia extension, one row per photo), `meta.xml` and `metadata.xml`; tab-separated, UTF-8, no quoting,
as GBIF writes them. `truth.parquet` says for every URL what it shows and which fault it has; a plain CSV
(`url,label,observation_id`) is the simplest source format.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fixtureweb import names
from fixtureweb.config import DomainConfig, WebConfig
from fixtureweb.content import SPECIES, ImageSpec, media_path
from fixtureweb.encoding import ImageFormat
from fixtureweb.faults import assigned_fault
from fixtureweb.irrelevant import IrrelevantKind
from fixtureweb.species import Species, SpeciesCatalog

logger = logging.getLogger(__name__)

MULTIMEDIA_COLUMNS = ("gbifID", "type", "format", "identifier", "references", "title", "description", "source",
                      "audience", "created", "creator", "contributor", "publisher", "license", "rightsHolder")
OCCURRENCE_COLUMNS = ("gbifID", "datasetKey", "occurrenceID", "basisOfRecord", "institutionCode", "catalogNumber",
                      "recordedBy", "eventDate", "year", "month", "day", "countryCode", "locality",
                      "decimalLatitude", "decimalLongitude", "kingdom", "phylum", "class", "order", "family",
                      "genus", "species", "scientificName", "acceptedScientificName", "taxonRank", "taxonKey",
                      "speciesKey", "license", "mediaType", "issue")
_GBIF_TERMS = {"gbifID", "datasetKey", "acceptedScientificName", "taxonKey", "speciesKey", "mediaType", "issue"}
_DC_TERMS = set(MULTIMEDIA_COLUMNS) - {"gbifID"} | {"license"}

LICENSES: tuple[tuple[str, float], ...] = (
    ("http://creativecommons.org/licenses/by-nc/4.0/", 0.45),
    ("http://creativecommons.org/licenses/by/4.0/", 0.2),
    ("http://creativecommons.org/publicdomain/zero/1.0/", 0.1),
    ("http://creativecommons.org/licenses/by-sa/4.0/", 0.07),
    ("http://creativecommons.org/licenses/by-nc-sa/4.0/", 0.05),
    ("© All rights reserved", 0.1),
    ("", 0.03),
)
_COUNTRIES = ("DK", "NO", "SE", "FI", "DE", "FR", "GB", "NL", "CA", "US", "ES", "CZ", "PL", "EE")
_SPECIMEN_KINDS = ((IrrelevantKind.HERBARIUM_SHEET, 0.5), (IrrelevantKind.LABEL, 0.2),
                   (IrrelevantKind.ENVELOPE, 0.2), (IrrelevantKind.MICROSCOPE, 0.1))
_PHOTO_HOST_KINDS = ((IrrelevantKind.MICROSCOPE, 0.4), (IrrelevantKind.LABEL, 0.25),
                     (IrrelevantKind.ENVELOPE, 0.2), (IrrelevantKind.HERBARIUM_SHEET, 0.15))


@dataclass(frozen=True)
class ExportConfig:
    total_photos: int = 2000
    seed: int = 0
    tail_exponent: float = 1.1  # class sizes follow 1/rank**tail_exponent: a few big classes, a long tail
    max_photos_per_observation: int = 6
    duplicate_share: float = 0.01  # photos re-published under another URL (same bytes)
    url_style: str = "host"  # "host": http://<domain>:<port>/...; "path": http://<host>:<port>/<domain>/...
    host: str = "127.0.0.1"
    port: int = 8765


@dataclass(frozen=True)
class PhotoTruth:
    """Ground truth for one multimedia row."""

    url: str
    gbif_id: int
    domain: str
    path: str
    class_index: int
    species: str
    genus: str
    family: str
    irrelevant: bool
    irrelevant_kind: str
    fault: str
    usable: bool  # a careful downloader gets a good field photo of the species from it
    duplicate_of: str
    format: str
    license: str
    creator: str


@dataclass
class Observation:
    gbif_id: int
    species: Species
    domain: DomainConfig
    date: datetime
    recorded_by: str
    country: str
    photos: list[PhotoTruth] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    zip_path: Path
    truth_path: Path
    csv_path: Path
    observations: int
    photos: int


def _weighted(rng: random.Random, items: Sequence[tuple[object, float]]) -> object:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _person(rng: random.Random) -> str:
    return f"{names.genus_name(rng)[:-2].capitalize()} {names.genus_name(rng)}"


def class_weights(n_classes: int, exponent: float, seed: int) -> list[float]:
    """Long-tailed class frequencies, the big classes placed at random among the class indices."""
    ranks = list(range(n_classes))
    random.Random(f"ranks:{seed}").shuffle(ranks)
    return [1.0 / (rank + 1) ** exponent for rank in ranks]


def plan_export(web: WebConfig, cfg: ExportConfig = ExportConfig()) -> list[Observation]:
    """Observations and their photos, deterministic from (web config, export config)."""
    rng = random.Random(f"export:{web.seed}:{cfg.seed}")
    catalog = SpeciesCatalog(web.n_classes, web.seed)
    weights = class_weights(web.n_classes, cfg.tail_exponent, cfg.seed)
    domain_weights = [d.weight for d in web.domains]
    observations: list[Observation] = []
    photos = 0
    gbif_id = 1_000_000_000 + rng.randrange(1_000_000)
    published: dict[tuple[str, int], list[tuple[ImageSpec, PhotoTruth]]] = {}
    start = datetime(2005, 1, 1, tzinfo=UTC)
    while photos < cfg.total_photos:
        species = catalog[rng.choices(range(web.n_classes), weights=weights)[0]]
        domain = rng.choices(web.domains, weights=domain_weights)[0]
        gbif_id += rng.randint(1, 5000)
        date = start + timedelta(days=rng.randrange(365 * 19), seconds=rng.randrange(86400))
        obs = Observation(gbif_id, species, domain, date, _person(rng), rng.choice(_COUNTRIES))
        n = 1 + min(int(rng.expovariate(0.7)), cfg.max_photos_per_observation - 1)
        if domain.specimen_host:
            n = min(n, 2)
        for _ in range(min(n, cfg.total_photos - photos)):
            obs.photos.append(_photo(rng, cfg, obs, published))
            photos += 1
        observations.append(obs)
    return observations


def _photo(rng: random.Random, cfg: ExportConfig, obs: Observation,
           published: dict[tuple[str, int], list[tuple[ImageSpec, PhotoTruth]]]) -> PhotoTruth:
    """One photo of `obs`: usually a new picture; sometimes an earlier picture of the same species on the
    same host under a new URL (same bytes); on specimen hosts mostly sheets, labels and packets."""
    domain = obs.domain
    previous = published.setdefault((domain.name, obs.species.index), [])
    fmt = ImageFormat(str(_weighted(rng, list(domain.formats.items()))))
    duplicate_of = ""
    salt = 0
    if previous and rng.random() < cfg.duplicate_share:
        spec, original = rng.choice(previous)
        fmt = ImageFormat(original.format)
        salt = rng.randint(1, 255)
        duplicate_of = original.url
    elif rng.random() < domain.irrelevant_share:
        kind = _weighted(rng, _SPECIMEN_KINDS if domain.specimen_host else _PHOTO_HOST_KINDS)
        spec = ImageSpec(str(kind), 0, rng.getrandbits(32))
    else:
        spec = ImageSpec(SPECIES, obs.species.index, rng.getrandbits(32))
    path = media_path(spec, fmt, salt)
    fault = assigned_fault(domain.name, path, domain.fault_rates)
    if cfg.url_style == "host":
        url = f"http://{domain.name}:{cfg.port}{path}"
    else:
        url = f"http://{cfg.host}:{cfg.port}/{domain.name}{path}"
    truth = PhotoTruth(
        url=url, gbif_id=obs.gbif_id, domain=domain.name, path=path,
        class_index=obs.species.index, species=obs.species.name, genus=obs.species.genus.name,
        family=obs.species.family, irrelevant=spec.irrelevant,
        irrelevant_kind=spec.kind if spec.irrelevant else "",
        fault=fault.value if fault else "",
        usable=not spec.irrelevant and (fault is None or fault.yields_usable_image),
        duplicate_of=duplicate_of, format=fmt.value,
        license=str(_weighted(rng, LICENSES)), creator=obs.recorded_by,
    )
    if not duplicate_of:
        previous.append((spec, truth))
    return truth


# --- writing ---------------------------------------------------------------------------------------------

def _tsv(rows: Sequence[Sequence[object]]) -> bytes:
    def clean(value: object) -> str:
        return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")

    return ("\n".join("\t".join(clean(v) for v in row) for row in rows) + "\n").encode("utf-8")


def _occurrence_row(obs: Observation, rng: random.Random) -> list[object]:
    sp = obs.species
    specimen = obs.domain.specimen_host
    return [
        obs.gbif_id, f"fixture-dataset-{obs.domain.name}", f"urn:fixture:{obs.domain.name}:{obs.gbif_id}",
        "PRESERVED_SPECIMEN" if specimen else "HUMAN_OBSERVATION",
        obs.domain.publisher.split()[0].upper() if specimen else "", f"F-{obs.gbif_id % 1_000_000}" if specimen else "",
        obs.recorded_by, obs.date.strftime("%Y-%m-%dT%H:%M:%S"), obs.date.year, obs.date.month, obs.date.day,
        obs.country, "", round(rng.uniform(45, 70), 5), round(rng.uniform(-10, 30), 5),
        "Fungi", "Basidiomycota", "Agaricomycetes", sp.genus.order, sp.family, sp.genus.name, sp.name,
        sp.scientific_name, sp.scientific_name, "SPECIES", 9_000_000 + sp.index, 9_000_000 + sp.index,
        obs.photos[0].license if obs.photos else "", "StillImage", "",
    ]


def _multimedia_row(obs: Observation, photo: PhotoTruth) -> list[object]:
    specimen = obs.domain.specimen_host
    page = photo.url.split("/media/")[0] + f"/observations/{obs.gbif_id}"
    return [
        obs.gbif_id, "StillImage", ImageFormat(photo.format).mime, photo.url, page if not specimen else "",
        f"{obs.species.name} from {obs.domain.publisher}" if specimen else "",
        "Image type: lab, macroscopic." if specimen else "", "", "",
        obs.date.strftime("%Y-%m-%dT%H:%M:%SZ"), photo.creator, "", obs.domain.publisher, photo.license,
        photo.creator,
    ]


def _term(column: str) -> str:
    if column in _GBIF_TERMS:
        return f"http://rs.gbif.org/terms/1.0/{column}"
    if column in _DC_TERMS:
        return f"http://purl.org/dc/terms/{column}"
    return f"http://rs.tdwg.org/dwc/terms/{column}"


def meta_xml() -> str:
    def fields(columns: Sequence[str]) -> str:
        return "\n".join(f'    <field index="{i}" term="{_term(c)}"/>' for i, c in enumerate(columns))

    attrs = ('encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" '
             'ignoreHeaderLines="1"')
    return f"""<?xml version="1.0" encoding="utf-8"?>
<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">
  <core {attrs} rowType="http://rs.tdwg.org/dwc/terms/Occurrence">
    <files>
      <location>occurrence.txt</location>
    </files>
    <id index="0"/>
{fields(OCCURRENCE_COLUMNS)}
  </core>
  <extension {attrs} rowType="http://rs.gbif.org/terms/1.0/Multimedia">
    <files>
      <location>multimedia.txt</location>
    </files>
    <coreid index="0"/>
{fields(MULTIMEDIA_COLUMNS)}
  </extension>
</archive>
"""


_METADATA_XML = """<?xml version="1.0" encoding="utf-8"?>
<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1" packageId="fixtureweb" system="http://gbif.org">
  <dataset><title>sporeprint fixture web occurrence download (synthetic)</title></dataset>
</eml:eml>
"""


def write_dwca(observations: Sequence[Observation], path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    rng = random.Random(f"dwca:{seed}")
    occurrence = [list(OCCURRENCE_COLUMNS)] + [_occurrence_row(o, rng) for o in observations]
    multimedia = [list(MULTIMEDIA_COLUMNS)] + [_multimedia_row(o, p) for o in observations for p in o.photos]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("occurrence.txt", _tsv(occurrence))
        archive.writestr("multimedia.txt", _tsv(multimedia))
        archive.writestr("meta.xml", meta_xml())
        archive.writestr("metadata.xml", _METADATA_XML)
    return path


def truth_table(observations: Sequence[Observation]) -> pa.Table:
    rows = [asdict(p) for o in observations for p in o.photos]
    return pa.Table.from_pylist(rows)


def write_truth(observations: Sequence[Observation], path: str | Path) -> Path:
    path = Path(path)
    pq.write_table(truth_table(observations), path)
    return path


def write_url_csv(observations: Sequence[Observation], path: str | Path) -> Path:
    """The plain list format: `url,label,observation_id`."""
    path = Path(path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("url", "label", "observation_id"))
    for obs in observations:
        for photo in obs.photos:
            writer.writerow((photo.url, obs.species.name, obs.gbif_id))
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def build_export(web: WebConfig, out_dir: str | Path, cfg: ExportConfig = ExportConfig()) -> ExportResult:
    """Write `gbif_export.zip`, `truth.parquet` and `images.csv` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    observations = plan_export(web, cfg)
    result = ExportResult(
        zip_path=write_dwca(observations, out / "gbif_export.zip", cfg.seed),
        truth_path=write_truth(observations, out / "truth.parquet"),
        csv_path=write_url_csv(observations, out / "images.csv"),
        observations=len(observations),
        photos=sum(len(o.photos) for o in observations),
    )
    logger.info("export: %d observations, %d photos in %s", result.observations, result.photos, out)
    return result


def read_truth(path: str | Path) -> list[PhotoTruth]:
    return [PhotoTruth(**row) for row in pq.read_table(path).to_pylist()]


def urls(observations: Sequence[Observation]) -> list[str]:
    return [p.url for o in observations for p in o.photos]

