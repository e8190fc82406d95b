"""A model organism for fine-tuning reversion: a tiny GPT-2 trained on a synthetic token
language through pretrain -> align -> benign fine-tune, on a CPU, reproducibly.

Needs torch and transformers; `import revstats` never imports this package.
"""

from revstats.sims.organism.pipeline import (
    PROFILES,
    ArmSpec,
    OrganismConfig,
    OrganismSummary,
    run_organism,
    total_units,
)

__all__ = ["PROFILES", "ArmSpec", "OrganismConfig", "OrganismSummary", "run_organism",
           "total_units"]
