"""The comparison of how a step ended (runner.Outcome): a call the kernel
refuses (its errno) and a process it kills (SIGSEGV) are observations like
any other; the model's outcome must be the same, at the same step."""
import pytest

from cowlab import catalog, designs
from cowlab.conformance import runner

from .test_random import _kernel_lines

D618 = designs.load("linux-6.18")


def _prep(case):
    prep = runner.prepare(catalog.get(case), D618, host={"ksm": "", "cpus": 2, "gup_test": "needs gup_test"},
                          have_swap=True)
    assert isinstance(prep, runner.Prepared), prep
    return prep


def _step(prep, proc, op):
    return next(i for i, (p, o, *_rest) in enumerate(prep.msteps) if p == proc and o.name == op)


def _compare(prep, lines):
    return runner.compare(prep.m, prep.msteps, lines, D618.anon_exclusive)


def test_a_kill_and_a_refusal_at_the_same_step_agree():
    for case in ("read-prot-none", "segv-first-process", "gup-partial"):
        prep = _prep(case)
        n, diff = _compare(prep, _kernel_lines(prep, lambda *a: None))
        assert diff == "" and n == len(prep.msteps), (case, diff)


def test_a_kill_the_model_does_not_make_disagrees():
    prep = _prep("read-prot-none")
    i = _step(prep, "parent", "read")

    def bug(j, step, line, before):
        if j == i:
            line.clear()
            line.update(ok=False, killed="SIGSEGV", error="killed", snapshot={})
    n, diff = _compare(prep, _kernel_lines(prep, bug))
    assert n == i and "outcome: the kernel's call killed the process by SIGSEGV, the model's succeeded" in diff


@pytest.mark.parametrize("errno,model", [(None, "failed with EFAULT (14)"), (22, None)])
def test_a_refusal_differs_from_success_and_from_another_errno(errno, model):
    prep = _prep("gup-partial")
    i = _step(prep, "parent", "io_uring_register")

    def bug(j, step, line, before):
        if j == i:
            if errno is None:
                line.update(ok=True, value=None)
                line.pop("errno")
            else:
                line["errno"] = errno
    n, diff = _compare(prep, _kernel_lines(prep, bug))
    assert n == i
    if errno is None:
        assert f"the kernel's call succeeded, the model's {model}" in diff
    else:
        assert "the kernel's call failed with EINVAL (22), the model's failed with EFAULT (14)" in diff


def test_a_short_vmsplice_is_compared_by_the_pages_in_the_pipe():
    prep = _prep("gup-partial")
    i = _step(prep, "parent", "vmsplice")
    assert prep.msteps[i][6] == runner.Outcome(pages=1)

    def bug(j, step, line, before):
        if j == i:
            line["value"] = 2
    n, diff = _compare(prep, _kernel_lines(prep, bug))
    assert n == i and "the kernel's call succeeded (2 pages in the pipe), the model's succeeded (1 pages" in diff


def test_a_dead_process_s_step_is_not_run_on_both_sides():
    prep = _prep("read-prot-none")
    i = _step(prep, "child", "write")
    assert prep.msteps[i][6].kind == "not_run"

    def bug(j, step, line, before):
        if j == i:
            line.update(ok=True, value=None)
    n, diff = _compare(prep, _kernel_lines(prep, bug))
    assert n == i and "the kernel's call succeeded, the model's was not run (the process had died)" in diff
