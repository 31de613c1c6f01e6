"""The importer on the real GBIF export and on the bad files users actually send."""

import random
import zipfile
from pathlib import Path

import pyarrow.compute as pc
import pytest

from services.downloader.importers import ImportFailed, SourceFormat, Taxon, parse_source
from services.downloader.importers.csvlist import ObservationGrouping, read_csv_list

pytestmark = pytest.mark.unit

PSILOCYBE = Taxon("Psilocybe semilanceata", family="Hymenogastraceae")
MULTIMEDIA_HEADER = (
    "gbifID\ttype\tformat\tidentifier\treferences\ttitle\tdescription\tsource\taudience\tcreated\tcreator"
    "\tcontributor\tpublisher\tlicense\trightsHolder"
)


def _lines(path: Path) -> tuple[str, list[str]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    return header, rows


def test_real_gbif_export_imports_every_row(gbif_sample: Path) -> None:
    parsed = parse_source(gbif_sample, PSILOCYBE)
    table = parsed.table
    assert parsed.format is SourceFormat.gbif_multimedia
    assert table.num_rows == 1619
    assert parsed.stats["duplicates_collapsed"] == 0
    # several photos per observation, one observation id per gbifID
    assert pc.count_distinct(table.column("observation_id")).as_py() < table.num_rows
    assert table.column("species").unique().to_pylist() == ["Psilocybe semilanceata"]
    assert table.column("genus").unique().to_pylist() == ["Psilocybe"]
    licences = set(table.column("license").drop_null().to_pylist())
    assert "© All rights reserved" in licences and "http://creativecommons.org/licenses/by-nc/4.0/" in licences
    assert table.column("license").null_count > 0  # empty fields stay empty
    assert "media.canadensys.net" in set(table.column("domain").to_pylist())
    # the one InteractiveResource row is kept, marked skipped with a reason
    skipped = table.filter(pc.equal(table.column("status"), "skipped")).to_pylist()
    assert len(skipped) == 1 and "not a still image" in skipped[0]["error"]


def test_ids_stable_across_reimport_shuffle_and_filtering(gbif_sample: Path, tmp_path: Path) -> None:
    original = parse_source(gbif_sample, PSILOCYBE).table
    header, rows = _lines(gbif_sample)
    random.Random(7).shuffle(rows)
    kept = rows[: len(rows) // 2]
    edited = [row.replace("http://creativecommons.org/licenses/by-nc/4.0/", "CC-BY-NC") for row in kept]
    shuffled = tmp_path / "multimedia.txt"
    shuffled.write_text("\n".join([header, *edited]) + "\n", encoding="utf-8")
    again = parse_source(shuffled, PSILOCYBE).table

    def ids_by_url(table):  # type: ignore[no-untyped-def]
        return dict(zip(table.column("url").to_pylist(), table.column("image_id").to_pylist(), strict=True))

    before, after = ids_by_url(original), ids_by_url(again)
    assert len(after) == len(kept)
    assert all(before[url] == image for url, image in after.items())
    assert parse_source(gbif_sample, PSILOCYBE).table.equals(original)  # same bytes, same table


def test_duplicate_rows_are_collapsed_and_counted(gbif_sample: Path, tmp_path: Path) -> None:
    header, rows = _lines(gbif_sample)
    doubled = tmp_path / "multimedia.txt"
    doubled.write_text("\n".join([header, *rows, *rows[:10]]) + "\n", encoding="utf-8")
    parsed = parse_source(doubled, PSILOCYBE)
    assert parsed.table.num_rows == 1619
    assert parsed.stats["duplicates_collapsed"] == 10


def test_dwca_zip_joins_taxon_from_occurrence(tmp_path: Path) -> None:
    archive = tmp_path / "download.zip"
    occurrence = "gbifID\tbasisOfRecord\tscientificName\tfamily\tgenus\tspecies\n" \
                 "1\tHUMAN_OBSERVATION\tAmanita muscaria (L.) Lam.\tAmanitaceae\tAmanita\tAmanita muscaria\n" \
                 "2\tPRESERVED_SPECIMEN\tBoletus edulis Bull.\tBoletaceae\tBoletus\tBoletus edulis\n"
    multimedia = MULTIMEDIA_HEADER + "\n" + "\n".join(
        f"{gid}\tStillImage\timage/jpeg\thttps://img.example.org/{gid}/{n}.jpg" + "\t" * 10 + "CC0\tSomeone"
        for gid in (1, 2) for n in range(3)
    ) + "\n"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("occurrence.txt", occurrence)
        zf.writestr("multimedia.txt", multimedia)
    parsed = parse_source(archive)
    assert parsed.format is SourceFormat.gbif_archive
    rows = {row["url"]: row for row in parsed.table.to_pylist()}
    assert len(rows) == 6
    first = rows["https://img.example.org/1/0.jpg"]
    assert (first["species"], first["genus"], first["family"]) == ("Amanita muscaria", "Amanita", "Amanitaceae")
    assert first["basis_of_record"] == "HUMAN_OBSERVATION" and first["observation_id"] == "1"
    assert rows["https://img.example.org/2/2.jpg"]["basis_of_record"] == "PRESERVED_SPECIMEN"


def test_csv_list_with_and_without_observation_ids(tmp_path: Path) -> None:
    listing = tmp_path / "photos.csv"
    listing.write_text(
        'url,label,observation_id\n'
        'https://a.org/1.jpg,Amanita muscaria,obs-1\n'
        'https://a.org/2.jpg,Amanita muscaria,obs-1\n'
        '"https://b.org/3.jpg","Boletus edulis",\n'
        'ftp://c.org/4.jpg,Boletus edulis,obs-9\n'
    )
    parsed = parse_source(listing)
    rows = {row["url"]: row for row in parsed.table.to_pylist()}
    assert parsed.format is SourceFormat.csv_list and len(rows) == 4
    assert rows["https://a.org/1.jpg"]["observation_id"] == rows["https://a.org/2.jpg"]["observation_id"] == "obs-1"
    assert rows["https://b.org/3.jpg"]["observation_id"] == rows["https://b.org/3.jpg"]["image_id"]
    assert rows["https://b.org/3.jpg"]["genus"] == "Boletus"
    assert rows["ftp://c.org/4.jpg"]["status"] == "skipped"


BURSTS = (
    "url,label,recorded_by,event_date,latitude,longitude,locality,observation_id\n"
    "https://a.org/1.jpg,Amanita muscaria,Ann Lee,2024-09-14T10:01:02,55.67612,12.56834,,\n"
    "https://a.org/2.jpg,Amanita muscaria, ann  lee ,2024-09-14T10:01:09,55.6762,12.5684,,\n"  # the same burst
    "https://a.org/3.jpg,Amanita muscaria,Ann Lee,,55.6762,12.5684,,\n"  # no date
    "https://a.org/4.jpg,Boletus edulis,Ann Lee,2024-09-14,55.6762,12.5684,,\n"  # another species beside it
    "https://a.org/5.jpg,Amanita muscaria,Ann Lee,2024-09-15,55.6762,12.5684,,\n"  # the next day
    "https://a.org/6.jpg,Amanita muscaria,Ann Lee,2024-09-14,55.7000,12.5684,,\n"  # 2.6 km north
    "https://a.org/7.jpg,Amanita muscaria,Bo Ek,2024-09-14,55.6762,12.5684,,\n"  # another photographer
    "https://a.org/8.jpg,Amanita muscaria,Ann Lee,2024-09-14,,,Dyrehaven,\n"  # a place by name
    "https://a.org/9.jpg,Amanita muscaria,Ann Lee,2024-09-14,not a number,12.5,dyrehaven ,\n"
    "https://a.org/10.jpg,Amanita muscaria,Ann Lee,2024-09-14,55.6762,12.5684,,obs-given\n"
)


def _observations(path: Path, grouping: ObservationGrouping) -> dict[str, dict]:
    import pyarrow as pa

    table = pa.concat_tables(read_csv_list(path, grouping))
    return {row["url"].rsplit("/", 1)[-1]: row for row in table.to_pylist()}


def test_csv_burst_shots_share_a_derived_observation(tmp_path: Path) -> None:
    listing = tmp_path / "bursts.csv"
    listing.write_text(BURSTS)
    rows = {row["url"].rsplit("/", 1)[-1]: row for row in parse_source(listing).table.to_pylist()}  # the default
    burst = rows["1.jpg"]["observation_id"]
    assert burst.startswith("csv-obs-") and rows["2.jpg"]["observation_id"] == burst
    assert rows["3.jpg"]["observation_id"] == rows["3.jpg"]["image_id"]  # no date: its own observation
    others = [rows[name]["observation_id"] for name in ("4.jpg", "5.jpg", "6.jpg", "7.jpg")]
    assert len({burst, *others}) == 5  # species, day, place and photographer each tell observations apart
    assert rows["8.jpg"]["observation_id"] == rows["9.jpg"]["observation_id"] != burst  # by locality
    assert rows["10.jpg"]["observation_id"] == "obs-given"  # a given id always wins


def test_csv_grouping_is_stable_and_leaves_image_ids_alone(tmp_path: Path) -> None:
    listing = tmp_path / "bursts.csv"
    listing.write_text(BURSTS)
    grouped = _observations(listing, ObservationGrouping.photographer_date_place)
    again = _observations(listing, ObservationGrouping.photographer_date_place)
    alone = _observations(listing, ObservationGrouping.none)
    assert {k: r["observation_id"] for k, r in grouped.items()} == {k: r["observation_id"] for k, r in again.items()}
    assert {k: r["image_id"] for k, r in grouped.items()} == {k: r["image_id"] for k, r in alone.items()}
    assert alone["1.jpg"]["observation_id"] == alone["1.jpg"]["image_id"] != alone["2.jpg"]["observation_id"]
    assert alone["10.jpg"]["observation_id"] == "obs-given"


def test_csv_without_grouping_columns_keeps_one_photo_per_observation(tmp_path: Path) -> None:
    listing = tmp_path / "plain.csv"
    listing.write_text("url,label,rights_holder\nhttps://a.org/1.jpg,Amanita muscaria,Ann Lee\n"
                       "https://a.org/2.jpg,Amanita muscaria,Ann Lee\n")
    rows = parse_source(listing).table.to_pylist()
    assert [row["observation_id"] for row in rows] == [row["image_id"] for row in rows]


# bad input: each names the file, and the line and column where they are known
def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "multimedia.txt"
    empty.write_bytes(b"")
    with pytest.raises(ImportFailed, match=r"multimedia.txt, line 1: the file is empty"):
        parse_source(empty)


def test_header_only(tmp_path: Path) -> None:
    only = tmp_path / "multimedia.txt"
    only.write_text(MULTIMEDIA_HEADER + "\n")
    with pytest.raises(ImportFailed, match="no image rows"):
        parse_source(only)


def test_missing_column(tmp_path: Path) -> None:
    bad = tmp_path / "multimedia.txt"
    bad.write_text("gbifID\ttype\tformat\n1\tStillImage\timage/jpeg\n")
    with pytest.raises(ImportFailed, match=r"missing column\(s\) \['identifier'\]"):
        parse_source(bad)


def test_malformed_row_names_line_and_column(gbif_sample: Path, tmp_path: Path) -> None:
    header, rows = _lines(gbif_sample)
    rows[41] = rows[41] + "\textra\tfields"
    bad = tmp_path / "multimedia.txt"
    bad.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as caught:
        parse_source(bad, PSILOCYBE)
    assert caught.value.file == "multimedia.txt"
    assert caught.value.line == 43  # header is line 1, rows[41] is line 43
    assert "expected 15 fields, found 17" in str(caught.value)


def test_non_utf8_bytes_name_line_and_column(gbif_sample: Path, tmp_path: Path) -> None:
    header, rows = _lines(gbif_sample)
    data = "\n".join([header, *rows]).encode()
    lines = data.split(b"\n")
    fields = lines[100].split(b"\t")
    fields[10] = b"Bj\xf6rn"  # Latin-1 in the creator column
    lines[100] = b"\t".join(fields)
    bad = tmp_path / "multimedia.txt"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ImportFailed) as caught:
        parse_source(bad, PSILOCYBE)
    assert (caught.value.line, caught.value.column) == (101, 11)
    assert "not UTF-8" in str(caught.value)


def test_zip_without_multimedia(tmp_path: Path) -> None:
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("occurrence.txt", "gbifID\tspecies\n1\tAmanita muscaria\n")
    with pytest.raises(ImportFailed, match=r"download.zip: the archive has no multimedia file"):
        parse_source(archive)


def test_damaged_zip(tmp_path: Path) -> None:
    archive = tmp_path / "download.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ImportFailed, match="damaged zip"):
        parse_source(archive)


def test_unknown_format(tmp_path: Path) -> None:
    other = tmp_path / "notes.csv"
    other.write_text("name,age\nx,1\n")
    with pytest.raises(ImportFailed, match="unknown format"):
        parse_source(other)
