"""bench/out/report.json (the headline keys the issue asks for, then every figure) and a
markdown table for the README's performance section."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.load import LoadFigures
from bench.model import ModelFigures, PrecisionAgreement

HEADLINE_KIND = "phone-size"
LOAD_GENERATOR = "load generator"  # the bench's own process, which shares the cores with the services
SINGLE_REQUEST_SLACK_MS = 25.0
RATIO_TARGET = 0.85


@dataclass
class Report:
    weights: str
    precision: str
    device: str
    cpu: str
    cores: int
    model: ModelFigures
    agreement: PrecisionAgreement | None
    levels: dict[str, list[LoadFigures]] = field(default_factory=dict)
    search: LoadFigures | None = None
    rss_mb: dict[str, float] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)
    """1-minute load average at the start and at the end, for the record."""

    @property
    def quiet(self) -> bool:
        """Nothing else was running when the bench began (at the end, the bench's own load shows)."""
        return bool(self.load_average) and self.load_average[0] < self.cores

    @property
    def headline(self) -> LoadFigures:
        """Phone-size photos at the highest concurrency run (16 by default)."""
        return max(self.levels[HEADLINE_KIND], key=lambda f: f.concurrency)

    @property
    def single(self) -> LoadFigures:
        return min(self.levels[HEADLINE_KIND], key=lambda f: f.concurrency)

    @property
    def errors(self) -> int:
        return sum(f.errors for figures in self.levels.values() for f in figures)

    def targets(self) -> dict[str, dict[str, float | bool]]:
        ratio = self.headline.img_s / self.model.best_img_s
        single_limit = self.model.batch1_ms + SINGLE_REQUEST_SLACK_MS
        return {
            "e2e_over_model": {"value": round(ratio, 3), "target": RATIO_TARGET, "met": ratio >= RATIO_TARGET},
            "single_request_p50_ms": {"value": round(self.single.percentile(50), 1), "target": round(single_limit, 1),
                                      "met": self.single.percentile(50) <= single_limit},
            "errors": {"value": self.errors, "target": 0, "met": self.errors == 0},
        }

    def as_json(self) -> dict[str, object]:
        head = self.headline
        return {
            "model_img_s": round(self.model.best_img_s, 2),
            "e2e_img_s": round(head.img_s, 2),
            "e2e_over_model": round(head.img_s / self.model.best_img_s, 3),
            "p50_ms": round(head.percentile(50), 1),
            "p99_ms": round(head.percentile(99), 1),
            "errors": self.errors,
            "rss_mb": self.rss_mb,
            "targets": self.targets(),
            "details": {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "weights": self.weights, "precision": self.precision, "device": self.device,
                "cpu": self.cpu, "cores": self.cores, "load_average": self.load_average, "quiet": self.quiet,
                "headline": f"{HEADLINE_KIND} photos at concurrency {head.concurrency}",
                "model": {"img_s_by_batch": {str(k): round(v, 2) for k, v in self.model.img_s.items()},
                          "best_batch": self.model.best_batch, "batch1_ms": round(self.model.batch1_ms, 1)},
                "e2e": {kind: [f.summary() for f in figures] for kind, figures in self.levels.items()},
                "similarity_search": self.search.summary() if self.search else None,
                "bf16_vs_fp32": self.agreement.summary() if self.agreement else None,
            },
        }

    def as_markdown(self) -> str:
        m = self.model
        lines = [
            f"Weights `{self.weights}`, precision `{self.precision}`, {self.device}, {self.cores} cores ({self.cpu}).",
            "" if self.quiet else f"**Not a quiet machine** (load average {self.load_average} on {self.cores} cores): "
                                  "these figures are noise; do not quote them.",
            "",
            "| what | img/s | p50 ms | p95 ms | p99 ms | errors | ÷ bare model |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| bare model, batch 1 | {m.img_s[1]:.1f} | {m.batch1_ms:.1f} | | | | |",
            f"| bare model, best batch ({m.best_batch}) | {m.best_img_s:.1f} | | | | | 1.00 |",
        ]
        for kind, figures in self.levels.items():
            for f in figures:
                lines.append(f"| gateway, {kind}, concurrency {f.concurrency} | {f.img_s:.1f} | {f.percentile(50):.1f} "
                             f"| {f.percentile(95):.1f} | {f.percentile(99):.1f} | {f.errors} "
                             f"| {f.img_s / m.best_img_s:.2f} |")
        if self.search:
            s = self.search
            lines.append(f"| similarity search alone (HTTP, k=10) | | {s.percentile(50):.2f} | {s.percentile(95):.2f} "
                         f"| {s.percentile(99):.2f} | {s.errors} | |")
        lines += self._cpu_lines()
        lines += ["", "| service | peak RSS MB |", "|---|---:|"]
        lines += [f"| {name} | {mb:.0f} |" for name, mb in self.rss_mb.items()]
        if self.agreement:
            a = self.agreement
            lines += ["", f"bf16 vs fp32 ({a.queries} queries, {a.catalog} catalogue images): min cosine "
                          f"{a.min_cosine:.4f}, mean {a.mean_cosine:.4f}, same top-1 {a.same_top1:.1%}."]
        lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
        for name, t in self.targets().items():
            lines.append(f"| {name} | {t['value']} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
        return "\n".join(lines) + "\n"


    def model_cpu_ms(self) -> float:
        """CPU the bare model spends on one image at its best batch, with every core busy."""
        return 1000 * self.cores / self.model.best_img_s

    def _cpu_lines(self) -> list[str]:
        """Where a search's CPU goes at the highest concurrency: the ceiling on the ratio, explained."""
        busiest = {kind: max(figures, key=lambda f: f.concurrency) for kind, figures in self.levels.items()}
        busiest = {kind: f for kind, f in busiest.items() if f.cpu_ms}
        if not busiest:
            return []
        first = next(iter(busiest.values()))
        names = list(first.cpu_ms)
        lines = ["", f"CPU per search in core-ms, at concurrency {first.concurrency} (the bare model needs "
                     f"{self.model_cpu_ms():.1f} per image at its best batch on {self.cores} cores):", "",
                 "| photos | " + " | ".join(names) + " | all | bare model ÷ all |",
                 "|---|" + "---:|" * (len(names) + 2)]
        for kind, f in busiest.items():
            total = sum(f.cpu_ms.values())
            lines.append(f"| {kind} | " + " | ".join(f"{f.cpu_ms[n]:.1f}" for n in names)
                         + f" | {total:.1f} | {self.model_cpu_ms() / total:.2f} |")
        return lines


def write_report(report: Report, out: Path) -> tuple[Path, Path]:
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    md_path.write_text(report.as_markdown())
    return json_path, md_path
