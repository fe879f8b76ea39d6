"""Markdown tables of results: cells and alignment, by hand."""

from mdeas.report import cell, markdown_table


def test_cells():
    assert cell(None) == ""
    assert cell(0.123456) == "0.1235"
    assert cell([0.1, 0.25]) == "[0.1000, 0.2500]"
    assert cell("a|b") == "a\\|b" and cell(3) == "3"


def test_table_lines_and_alignment():
    assert markdown_table(["k", "v"], [["a", "1"]]) == ["| k | v |", "|---|---|", "| a | 1 |"]
    assert markdown_table(["k", "v", "w"], [], numeric_from=1) == ["| k | v | w |", "|---|---:|---:|"]
