"""MMLU subject presets for --mmlu-subjects: MMLU's four categories and the replaced project's lists.

The categories are the authors' (hendrycks/test, categories.py): each subject has a subcategory
(math, physics, history, health, ...) and each subcategory one of four categories: STEM,
humanities, social sciences, and other (business, health, miscellany). Every one of the 57 subjects
is in exactly one.

`baseline` and `extended` are the replaced project's quick runs: two subjects for a first look,
and ten spread over the four categories for a comparison that still fits a CPU machine.
"""

from __future__ import annotations

from collections.abc import Iterable

STEM = ("abstract_algebra", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics",
        "electrical_engineering", "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning")
HUMANITIES = ("formal_logic", "high_school_european_history", "high_school_us_history",
              "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
              "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
              "world_religions")
SOCIAL = ("econometrics", "high_school_geography", "high_school_government_and_politics",
          "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
          "human_sexuality", "professional_psychology", "public_relations", "security_studies", "sociology",
          "us_foreign_policy")
OTHER = ("anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
         "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
         "professional_medicine", "virology")

PRESETS: dict[str, tuple[str, ...]] = {
    "baseline": ("abstract_algebra", "anatomy"),
    "extended": ("abstract_algebra", "anatomy", "clinical_knowledge", "college_computer_science",
                 "high_school_macroeconomics", "high_school_mathematics", "high_school_us_history",
                 "philosophy", "professional_law", "sociology"),
    "stem": STEM,
    "humanities": HUMANITIES,
    "social": SOCIAL,
    "other": OTHER,
}
ALL_SUBJECTS = tuple(sorted(STEM + HUMANITIES + SOCIAL + OTHER))


def expand(tokens: Iterable[str]) -> tuple[str, ...]:
    """Subject names and preset names -> subject names, each once, in the order first named."""
    out: dict[str, None] = {}
    for token in tokens:
        for subject in PRESETS.get(token, (token,)):
            out[subject] = None
    return tuple(out)


def category(subject: str) -> str | None:
    """stem, humanities, social or other; None for a name that is not an MMLU subject."""
    for name in ("stem", "humanities", "social", "other"):
        if subject in PRESETS[name]:
            return name
    return None
