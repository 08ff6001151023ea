"""The bad-input table (python_tests/_bad_input_cases.py) as a test: every public op and model
method, given wrong types, integer and bool dtypes, meta tensors, wrong shapes, empty and 0-d
tensors, NaN and inf in every tensor and float argument, negative and huge counts, seeds and
offsets at and past their limits, non-contiguous and expanded inputs, or run under
``torch.inference_mode()``, either raises a clear error (``<entry point>: <argument> must
..., got ...``, a ValueError / TypeError / RuntimeError) or returns the right result.

``tools/probe_bad_input.py`` runs the same table in a child process (with a timeout per case)
and prints the categories; the cases marked with another change's ``owner`` are left out here
(that change fixes them and adds its own tests).
"""

import inspect

import pytest
import torch

import gmkernels
from gmkernels import score
from gmkernels.boltzmann import RBM, BoltzmannMachine
from gmkernels.flows import PlanarFlow, RealNVP

import _bad_input_cases as table

ALL = table.cases()
CASES = [c for c in ALL if c.owner is None]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly_or_computed_right(case):
    category, detail = table.classify(case)
    assert category == table.GOOD, f"{case.id} (expected {case.expect}): {category}: {detail}"


# --------------------------------------------------------------------------------------------
# the table itself: it covers the public API, and its verdicts can fail

def _public_entry_points():
    """Every public op (gmkernels, gmkernels.random, the samplers of gmkernels.score) and every
    public method of the models and of the SDE / schedule objects, by the name its errors
    carry."""
    ops = {f"gmkernels.{n}" for n in gmkernels.__all__
           if inspect.isfunction(getattr(gmkernels, n))} - {
        "gmkernels.build_info", "gmkernels.extension_available", "gmkernels.use_backend"}
    ops |= {f"gmkernels.random.{n}" for n in ("uint32", "uniform", "normal", "rademacher",
                                              "bernoulli")}
    ops |= {f"gmkernels.score.{n}" for n in score.__all__ if inspect.isfunction(getattr(score, n))}
    ops |= {f"gmkernels.trace.{n}" for n in gmkernels.trace.__all__
            if inspect.isfunction(getattr(gmkernels.trace, n))}
    for cls in (RBM, BoltzmannMachine, PlanarFlow, RealNVP, score.VPSDE, score.VESDE,
                score.DDPMSchedule):
        ops.add(cls.__name__)
        for klass in cls.__mro__:
            if klass in (object, torch.nn.Module):
                continue
            for name, attr in vars(klass).items():
                if not name.startswith("_") and (inspect.isfunction(attr) or isinstance(
                        attr, (classmethod, staticmethod))):
                    ops.add(f"{cls.__name__}.{name}")
        if issubclass(cls, torch.nn.Module):
            ops.add(f"{cls.__name__}.load_state_dict")
    # no argument to get wrong: writing a state dict, the repr, the closed-form parameter count,
    # the SDE objects' formulas of t (floats or tensors, any value: sigma(t), beta(t), ...)
    ops -= {f"{c.__name__}.extra_repr" for c in (RBM, BoltzmannMachine, PlanarFlow, RealNVP)}
    ops -= {"RBM.save", "PlanarFlow.num_params", "VPSDE.beta", "VPSDE.int_beta",
            "VPSDE.sde", "VPSDE.marginal_prob", "VPSDE.prior_std", "VESDE.sigma", "VESDE.sde",
            "VESDE.marginal_prob", "VESDE.prior_std"}
    return ops


def test_the_table_covers_every_public_entry_point():
    covered = {t.op for t in table.targets()}
    missing = _public_entry_points() - covered
    assert not missing, f"entry points without a row in the bad-input table: {sorted(missing)}"


def test_every_target_has_error_and_result_cases():
    by_op: dict = {}
    for c in ALL:
        by_op.setdefault(c.op, set()).add(c.expect)
    thin = {op: kinds for op, kinds in by_op.items() if "error" not in kinds}
    assert not thin, f"targets without a single bad-input case: {thin}"


def _case(run, expect="error", arg="x", op="gmkernels.op", check=None):
    return table.Case("t", op, arg, (arg,), run, expect, check)


def test_classify_can_fail():
    """The verdicts are not vacuous: an internal error, an error without the op's name or the
    argument, an accepted bad input and a NaN in the wrong rows are each caught."""
    def raises(e):
        def run():
            raise e
        return run

    assert table.classify(_case(raises(ValueError("gmkernels.op: x must be finite, got nan"))))[0] == "good"
    assert table.classify(_case(raises(AttributeError("'str' object has no attribute 'dim'"))))[0] == "unclear"
    assert table.classify(_case(raises(ValueError("x must be finite"))))[0] == "unclear"
    assert table.classify(_case(raises(ValueError("gmkernels.op: y must be finite"))))[0] == "unclear"
    assert table.classify(_case(raises(ValueError("gmkernels.op: index must be finite"))))[0] == "unclear"
    assert table.classify(_case(lambda: torch.zeros(3)))[0] == "garbage"
    assert table.classify(_case(raises(ValueError("gmkernels.op: x must be ...")), expect="ok"))[0] == "unclear"
    nan_row1 = torch.zeros(4, 2)
    nan_row1[1, 0] = float("nan")
    check = (lambda o: table.nan_rows(o, 1, True, 4))
    assert table.classify(_case(lambda: nan_row1, expect="nan", check=check))[0] == "good"
    assert table.classify(_case(lambda: torch.zeros(4, 2), expect="nan", check=check))[0] == "garbage"
    spread = nan_row1.clone()
    spread[2, 1] = float("nan")
    assert table.classify(_case(lambda: spread, expect="nan", check=check))[0] == "garbage"
    finite_logdet = (nan_row1, torch.zeros(4))      # a row with NaN in, a plausible log-det out
    assert table.classify(_case(lambda: finite_logdet, expect="nan", check=check))[0] == "garbage"


def test_compare_sees_a_difference():
    a = torch.zeros(3)
    assert table.compare(a, a.clone()) is None
    assert table.compare(a, a + 1e-3) is not None
    assert table.compare(a, a.double()) is not None
    assert table.compare((a, a), (a,)) is not None
