"""Gate stage: data plus a pure decision (floor, regression vs champion, regression per slice)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.core.config import GateSpec
from tasks.core.tasktypes import METRICS, regression_amount
from tasks.evaluate import EvalReport


class GateCheck(BaseModel):
    name: str
    passed: bool
    detail: str


class GateDecision(BaseModel):
    passed: bool
    metric: str
    value: float
    champion_value: float | None
    champion_version: str | None
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return "passed"
        return "rejected: " + "; ".join(self.reasons)


def decide(candidate: EvalReport, champion: EvalReport | None, gate: GateSpec,
           champion_version: str | None = None, champion_error: str | None = None
           ) -> GateDecision:
    """Judge the candidate; without a champion only the floor applies."""
    metric = gate.metric
    higher = METRICS[metric].higher_is_better
    value = candidate.metrics.get(metric)
    checks: list[GateCheck] = []
    if value is None:
        checks.append(GateCheck(name="floor", passed=False,
                                detail=f"{metric} could not be computed on the test set"))
        return GateDecision(passed=False, metric=metric, value=float("nan"), champion_value=None,
                            champion_version=champion_version, checks=checks)
    ok = value >= gate.threshold if higher else value <= gate.threshold
    bound = "floor" if higher else "ceiling"
    checks.append(GateCheck(
        name="floor", passed=ok,
        detail=f"{metric} {value:.4f} {'meets' if ok else 'misses'} the {bound} {gate.threshold}"))

    champion_value = None
    if champion_error:
        checks.append(GateCheck(name="champion", passed=False,
                                detail=f"champion v{champion_version} could not be re-scored: "
                                       f"{champion_error}"))
    elif champion is not None:
        champion_value = champion.metrics.get(metric)
        if champion_value is not None:
            worse = regression_amount(metric, value, champion_value)
            ok = worse <= gate.max_regression
            checks.append(GateCheck(
                name="vs-champion", passed=ok,
                detail=f"{metric} {value:.4f} vs champion v{champion_version} "
                       f"{champion_value:.4f} (regression {max(worse, 0):.4f}, "
                       f"allowed {gate.max_regression})"))
        for col, values in candidate.slices.items():
            for slice_value, m in values.items():
                old = champion.slices.get(col, {}).get(slice_value, {}).get(metric)
                new = m.get(metric)
                if old is None or new is None:
                    continue
                worse = regression_amount(metric, new, old)
                if worse > gate.slice_max_regression:
                    checks.append(GateCheck(
                        name=f"slice {col}={slice_value}", passed=False,
                        detail=f"{col}={slice_value}: {metric} {new:.4f} vs champion {old:.4f} "
                               f"(regression {worse:.4f}, allowed {gate.slice_max_regression})"))
        if all(c.passed for c in checks if c.name.startswith("slice")):
            checks.append(GateCheck(name="slices", passed=True,
                                    detail=f"no slice regresses more than "
                                           f"{gate.slice_max_regression}"))
    return GateDecision(passed=all(c.passed for c in checks), metric=metric, value=value,
                        champion_value=champion_value, champion_version=champion_version,
                        checks=checks)


@task(name="gate", cache_policy=NO_CACHE)
def gate(candidate: EvalReport, champion: EvalReport | None, spec: GateSpec,
         champion_version: str | None, champion_error: str | None) -> GateDecision:
    from prefect.logging import get_run_logger

    decision = decide(candidate, champion, spec, champion_version, champion_error)
    logger = get_run_logger()
    for check in decision.checks:
        logger.info("gate %s: %s", "ok" if check.passed else "FAIL", check.detail)
    return decision
