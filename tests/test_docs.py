from pathlib import Path

from cowlab.docs import markdown


def test_docs_table_is_current():
    doc = Path(__file__).parent.parent / "docs" / "catalog.md"
    assert doc.read_text() == markdown(), "docs/catalog.md is stale: run `cowlab table > docs/catalog.md`"
