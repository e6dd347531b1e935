"""Render the ``docs/benchmarks.md`` sections from the benchmarks' results JSON, without rerunning them.

Each benchmark run with ``--write-docs`` writes its JSON and then calls
this, so the docs always read as their results files say. Run it alone
after a change to how a section reads:
    .venv/bin/python bench/render_docs.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import models_report
import pipeline_report
import scale_report
import service_report
from docs_section import write_section
from run_record import (
    DOCS_FILE,
    MODELS_RESULTS,
    PIPELINE_RESULTS,
    RESULTS_DIR,
    SERVICE_RESULTS,
    read_results,
    write_results,
)
from scale_results import SCALE_RESULTS


def render_sections(results_dir: Path) -> dict[str, str]:
    """Section heading → body, for each benchmark with a results file in ``results_dir``."""
    pipeline = read_results(results_dir / PIPELINE_RESULTS)
    service = read_results(results_dir / SERVICE_RESULTS)
    sections = {}
    if pipeline is not None:
        sections[pipeline_report.SECTION] = pipeline_report.render(pipeline)
        if service is not None:
            # What the pipeline's speed gives a client: the service's throughput, quoted from its section.
            sections[pipeline_report.SECTION] += "\n" + service_report.identify_throughput(service)
    if service is not None:
        # Its context note quotes the pipeline section above it, so both are rendered from one folder.
        sections[service_report.SECTION] = service_report.render(service, pipeline)
    models = read_results(results_dir / MODELS_RESULTS)
    if models is not None:
        sections[models_report.SECTION] = models_report.render(models)
    scale = read_results(results_dir / SCALE_RESULTS)
    if scale is not None:
        sections[scale_report.SECTION] = scale_report.render(scale)
    return sections


def write_docs(results_dir: Path, docs: Path) -> int:
    """Replace each section that has results (the others are left as they are); how many were."""
    sections = render_sections(results_dir)
    for heading, body in sections.items():
        write_section(docs, heading, body)
        print(f"wrote {heading!r} to {docs}", file=sys.stderr)
    return len(sections)


def add_output_options(parser: argparse.ArgumentParser, results_file: str | None = None) -> None:
    """--results-dir and --docs; for a benchmark writing ``results_file``, --write-docs too."""
    if results_file is not None:
        parser.add_argument(
            "--write-docs",
            action="store_true",
            help=f"write {results_file} into --results-dir, then re-render --docs from that folder",
        )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results JSON is kept"
    )
    parser.add_argument("--docs", type=Path, default=DOCS_FILE, help="the docs file the sections are in")


def publish(args: argparse.Namespace, results_file: str, results: object) -> None:
    """With --write-docs, a benchmark's results into the results folder and every section re-rendered."""
    if args.write_docs:
        write_results(args.results_dir / results_file, results)
        write_docs(args.results_dir, args.docs)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    if not write_docs(args.results_dir, args.docs):
        raise SystemExit(
            f"no {PIPELINE_RESULTS}, {SERVICE_RESULTS}, {MODELS_RESULTS} or {SCALE_RESULTS} "
            f"in {args.results_dir}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
