"""Scenario files that say nonsense are refused at load with one line naming
the file, the line and the field; nothing ends in a traceback or hangs.
(Issue 11: "Scenario files" and "Fuzzing".)"""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cowlab.cli import main
from cowlab.scenario import ScenarioError, Script
from cowlab.toml_format import load_case

ROOT = Path(__file__).parent.parent

BASE = """id = "base"
pages = 2

[[step]]
thread = "parent"
op = "mmap"
addr = 0
pages = 2

[[step]]
thread = "parent"
op = "write"
addr = 0

[[step]]
thread = "parent"
op = "fork"
child = "child"
"""


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _refused(tmp_path, text):
    """load_case() refuses the file: the message (one line, starting with the
    file name and a line number) and the text of the line it names."""
    p = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as e:
        load_case(str(p))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}:")
    line = msg[len(str(p)) + 1:].split(":")[0]
    lines = (text if isinstance(text, str) else text.decode("utf-8", "replace")).split("\n")
    return msg, (lines[int(line) - 1] if line.isdigit() else None)


def test_base_file_loads(tmp_path):
    c = load_case(str(_write(tmp_path, BASE)))
    assert c.processes == ("parent", "child")


# ----------------------------------------------------------------------------- [[thread]] tables
def test_thread_table_unknown_process(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "chidl"\n'
                         'ops = [{op = "read", addr = 0}]\n')
    assert "thread.0.process" in msg and "no process 'chidl'" in msg and "did you mean child?" in msg
    assert 'process = "chidl"' in line


def test_thread_table_process_no_step_names(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "ghost"\n'
                         'ops = [{op = "write", addr = 0}]\n')
    assert "no process 'ghost'" in msg and 'process = "ghost"' in line


def test_thread_table_address_out_of_range(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "parent"\n'
                                          'ops = [{op = "read", addr = 0}, {op = "pageout", addr = 9}]\n')
    assert "thread.0.ops.1.addr" in msg and "outside the 2-page address space" in msg and "addr = 9" in line


def test_thread_table_range_runs_past_the_end(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "parent"\n'
                                       'ops = [{op = "odirect_write", addr = 1, pages = 2}]\n')
    assert "1..2 (pages = 2) is outside" in msg


def test_thread_table_op_not_a_string(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "parent"\nops = [{op = 3, addr = 0}]\n')
    assert "thread.0.ops.0.op" in msg and "must be a string" in msg and "op = 3" in line


def test_thread_table_ops_not_tables(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "parent"\nops = [3]\n')
    assert "thread.0.ops.0" in msg


def test_step_op_not_a_string(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = 3\n')
    assert "step.3.op" in msg and "op = 3" in line


def test_duplicate_thread_names(tmp_path):
    t = '[[thread]]\nname = "r"\nprocess = "parent"\nops = [{op = "read", addr = 0}]\n'
    msg, line = _refused(tmp_path, BASE + t + t)
    assert "thread.1.name" in msg and "already defined" in msg and 'name = "r"' in line


def test_thread_table_named_after_a_process(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[thread]]\nname = "child"\nprocess = "parent"\n'
                       'ops = [{op = "read", addr = 0}]\n')
    assert "thread.0.name" in msg and "process 'child'" in msg


def test_fork_in_a_thread_table(tmp_path):
    """A concurrent thread may fork; a step of its child waits for that fork."""
    c = load_case(str(_write(tmp_path, BASE + '[[step]]\nthread = "kid"\nop = "read"\naddr = 0\n'
                                              '[[thread]]\nname = "forker"\nprocess = "child"\n'
                                              'ops = [{op = "fork", child = "kid"}]\n')))
    assert c.processes == ("parent", "child", "kid")


# ----------------------------------------------------------------------------- processes and threads
def test_misspelled_thread_is_not_a_new_process(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[step]]\nthread = "chidl"\nop = "write"\naddr = 0\n')
    assert "step.3.thread" in msg and "no process 'chidl'" in msg and "did you mean child?" in msg
    assert 'thread = "chidl"' in line


def test_misspelled_process_of_a_cpu_thread(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[step]]\nthread = "cpu1"\nprocess = "parnet"\nop = "read"\naddr = 0\n')
    assert "step.3.process" in msg and "did you mean parent?" in msg and 'process = "parnet"' in line


def test_step_before_its_fork(tmp_path):
    text = BASE.replace('[[step]]\nthread = "parent"\nop = "write"', '[[step]]\nthread = "child"\nop = "write"')
    msg, _ = _refused(tmp_path, text)
    assert "step.1.thread" in msg and "before the fork that makes it (step 2)" in msg


def test_thread_moving_between_processes(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "t"\nprocess = "parent"\nop = "read"\naddr = 0\n'
                                       '[[step]]\nthread = "t"\nprocess = "child"\nop = "read"\naddr = 0\n')
    assert "step.4.process" in msg and "stays in one process" in msg


def test_nothing_after_exit(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[step]]\nthread = "child"\nop = "exit"\n'
                                          '[[step]]\nthread = "child"\nop = "read"\naddr = 0\n')
    assert "step.4.op" in msg and "exited at step 3" in msg and 'op = "read"' in line


def test_fork_of_an_existing_process(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "child"\nop = "fork"\nchild = "parent"\n')
    assert "step.3.child" in msg and "already exists" in msg


def test_of_names_an_unknown_process(tmp_path):
    msg, line = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "ksm_merge"\naddr = 0\nof = "chil"\n')
    assert "step.3.of" in msg and "did you mean child?" in msg and 'of = "chil"' in line


# ----------------------------------------------------------------------------- arguments
def test_mremap_without_new_addr(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "mremap"\naddr = 0\n')
    assert "step.3.new_addr" in msg and "needs 'new_addr'" in msg


@pytest.mark.parametrize("op, args, missing", [
    ("vmsplice", 'addr = 0', "pipe"), ("pipe_read", '', "pipe"), ("mprotect", 'addr = 0', "prot"),
    ("madvise", 'addr = 0', "advice"), ("ksm_merge", 'addr = 0', "of"), ("write", '', "addr"),
    ("io_uring_register", '', "addr"), ("signal", '', "event")])
def test_every_required_argument(tmp_path, op, args, missing):
    msg, _ = _refused(tmp_path, BASE + f'[[step]]\nthread = "parent"\nop = "{op}"\n{args}\n')
    assert f"step.3.{missing}" in msg and f"needs '{missing}'" in msg


@pytest.mark.parametrize("arg, value, words", [
    ("pages", "0", "must be >= 1"), ("addr", "-1", "must be >= 0"), ("addr", "1.5", "integer"),
    ("addr", "true", "integer"), ("value", "1.5", "value"), ("value", "[1]", "value"),
    ("addr", "99999999999999999999", "number too large"), ("value", "99999999999999999999", "number too large")])
def test_argument_types_and_ranges(tmp_path, arg, value, words):
    msg, line = _refused(tmp_path, BASE + f'[[step]]\nthread = "parent"\nop = "write"\naddr = 0\n{arg} = {value}\n'
                         .replace("addr = 0\naddr", "addr"))
    assert f"step.3.{arg}" in msg and words in msg and line.startswith(arg)


def test_strict_top_level_types(tmp_path):
    msg, _ = _refused(tmp_path, BASE.replace("pages = 2\n", 'pages = "2"\n', 1))
    assert ":2: pages:" in msg


def test_thp_needs_whole_huge_pages(tmp_path):
    text = BASE.replace("pages = 2\n", "pages = 3\n", 1).replace("pages = 2\n", "pages = 2\nthp = true\n")
    msg, line = _refused(tmp_path, text)
    assert "step.0.thp" in msg and "multiple of" in msg and line.startswith("thp")


def test_reserved_event_names(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "signal"\nevent = "s4"\n')
    assert "step.3.event" in msg and "reserved" in msg


# ----------------------------------------------------------------------------- pins, pipes, buffers
@pytest.mark.parametrize("use, made, what", [
    ('op = "pipe_read"\npipe = "q"', 'op = "vmsplice"\naddr = 0\npipe = "p"', "no pipe 'q' in process 'parent'"),
    ('op = "io_uring_write_fixed"\nbuf = "c"', 'op = "io_uring_register"\naddr = 0\nbuf = "b"',
     "no io_uring buffer 'c'"),
    ('op = "io_uring_read_fixed"', 'op = "io_uring_register"\naddr = 0\nbuf = "b"', "no io_uring buffer 'buf'"),
    ('op = "io_uring_unregister"\nbuf = "bb"', 'op = "read"\naddr = 0', "no io_uring buffer 'bb'"),
    ('op = "pin_read"\npin = "x"', 'op = "pin_longterm"\naddr = 0\npin = "ro"', "no pin 'x'"),
    ('op = "unpin"', 'op = "read"\naddr = 0', "no pin 'gup_test' (the default: the operation names no pin)"),
    ('op = "put_user_pages"\npin = "ro"', 'op = "pin_longterm"\naddr = 0\npin = "ro"',
     "no get_user_pages reference 'ro'"),
    ('op = "speculative_put"\nwho = "w2"', 'op = "speculative_get"\naddr = 0\nwho = "w"',
     "no speculative reference 'w2'")])
def test_unknown_reference_names(tmp_path, use, made, what):
    text = BASE + f'[[step]]\nthread = "parent"\n{made}\n[[step]]\nthread = "parent"\n{use}\n'
    msg, line = _refused(tmp_path, text)
    assert "step.4." in msg and what in msg
    assert line is not None


def test_reference_suggests_the_near_name(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "pin_longterm"\naddr = 0\npin = "ro"\n'
                                       '[[step]]\nthread = "parent"\nop = "pin_read"\npin = "r0"\n')
    assert "did you mean ro?" in msg


def test_pipe_of_another_process(tmp_path):
    """Pipes belong to the process that spliced into them: the child cannot
    read the parent's (the model keys them by process)."""
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "vmsplice"\naddr = 0\npipe = "p"\n'
                                       '[[step]]\nthread = "child"\nop = "pipe_read"\npipe = "p"\n')
    assert "no pipe 'p' in process 'child'" in msg


def test_use_before_make(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "pin_read"\npin = "p"\n'
                                       '[[step]]\nthread = "parent"\nop = "pin_longterm"\naddr = 0\npin = "p"\n')
    assert "step.3.pin" in msg and "the pin 'p' is made only later (step 4)" in msg


def test_references_made_by_a_concurrent_thread_are_accepted(tmp_path):
    c = load_case(str(_write(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "pin_read"\npin = "p"\n'
                                              '[[thread]]\nname = "pinner"\nprocess = "parent"\n'
                                              'ops = [{op = "pin_longterm", addr = 0, pin = "p"}]\n')))
    assert [t.name for t in c.threads][-1] == "pinner"


# ----------------------------------------------------------------------------- bytes, strings, size
def test_invalid_utf8(tmp_path):
    msg, _ = _refused(tmp_path, BASE.encode() + b'title = "caf\xe9"\n')
    assert ":19: encoding: not UTF-8 (byte 0xe9 at column 13)" in msg


def test_deep_nesting(tmp_path):
    msg, _ = _refused(tmp_path, BASE + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "syntax" in msg and "nested too deeply" in msg


def test_moderate_nesting_is_a_field_error(tmp_path):
    msg, _ = _refused(tmp_path, BASE.replace('id = "base"', 'tags = ' + "[" * 200 + "]" * 200 + '\nid = "base"'))
    assert "tags" in msg


@pytest.mark.parametrize("where, value", [("title", "a\\u0007b"), ("thread", "par\\u001b[31ment"),
                                          ("title", "x\\u2028y"), ("title", "\\u202eevil")])
def test_control_characters(tmp_path, where, value):
    text = BASE.replace('thread = "parent"', f'thread = "{value}"', 1) if where == "thread" else \
        BASE.replace('id = "base"', f'id = "base"\ntitle = "{value}"')
    msg, _ = _refused(tmp_path, text)
    assert "control character U+" in msg


def test_control_character_in_a_key(tmp_path):
    msg, _ = _refused(tmp_path, BASE + '"a\\u0007" = 1\n')
    assert "control character" in msg and "\x07" not in msg


def test_long_name_refused_fast(tmp_path):
    """A 400,000-character name took 97 s to render; it is refused at once."""
    t0 = time.monotonic()
    msg, _ = _refused(tmp_path, BASE.replace('child = "child"', 'child = "' + "c" * 400_000 + '"'))
    assert time.monotonic() - t0 < 2
    assert "step.2.child" in msg and "400,000 characters; at most 64" in msg and len(msg) < 300


def test_long_title_refused(tmp_path):
    msg, _ = _refused(tmp_path, BASE.replace('id = "base"', 'id = "base"\ntitle = "' + "t" * 1001 + '"'))
    assert ":2: title:" in msg and "at most 1000" in msg


@pytest.mark.parametrize("name", ["a b", "a:b", "__parallel__", "", "-x"])
def test_names_are_names(tmp_path, name):
    msg, _ = _refused(tmp_path, BASE.replace('child = "child"', f'child = "{name}"'))
    assert "step.2.child" in msg and "is not a name" in msg


def test_file_size_and_operation_caps(tmp_path):
    msg, _ = _refused(tmp_path, BASE + "# " + "x" * (1 << 20) + "\n")
    assert ": file: " in msg and "at most 1,048,576" in msg
    msg, _ = _refused(tmp_path, BASE + '[[step]]\nthread = "parent"\nop = "read"\naddr = 0\n' * 1000)
    assert "1,003 operations; a scenario has at most 1,000" in msg


def test_line_numbers_ignore_unicode_line_separators(tmp_path):
    """TOML lines end at \\n only: a U+2028 in a comment does not shift them."""
    text = BASE.replace('id = "base"', 'id = "base"  # a\u2028b\x85c').replace('op = "fork"', 'op = "forkk"')
    _, line = _refused(tmp_path, text)
    assert 'op = "forkk"' in line


# ----------------------------------------------------------------------------- the Python API
def test_compile_case_refuses_duplicate_thread_names():
    s = Script("dup", pages=1)
    s.process("parent").mmap(0)
    s.thread("parent", [("read", {"addr": 0})], name="t")
    s.thread("parent", [("read", {"addr": 0})], name="t")
    with pytest.raises(ScenarioError, match="thread names used twice: t"):
        s.build()


def test_compile_case_fork_in_a_concurrent_thread():
    s = Script("tfork", pages=1)
    s.process("parent").mmap(0)
    s.thread("parent", [("fork", {"child": "kid"})], name="forker")
    assert s.build().processes == ("parent", "kid")


# ----------------------------------------------------------------------------- the command line
def _cli(*args):
    r = CliRunner().invoke(main, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r


@pytest.mark.parametrize("cmd", [["run"], ["explore", "--max-states", "50", "-q"], ["explain"]])
def test_commands_refuse_in_one_line(tmp_path, cmd):
    p = _write(tmp_path, BASE + '[[thread]]\nname = "r"\nprocess = "ghost"\nops = [{op = "read", addr = 0}]\n')
    r = _cli(cmd[0], str(p), "-d", "linux-6.18", *cmd[1:])
    assert r.exit_code == 2                     # an input error (exit status 2; was 1)
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith(f"cowlab: error: {p}:")


def test_set_with_a_non_ascii_digit():
    r = _cli("run", "basic-cow-fork", "-d", "linux-6.18", "--set", "page_lock=\u00b2")
    assert "Traceback" not in r.output


def _saved_trace(tmp_path):
    t = tmp_path / "t.json"
    r = _cli("explore", "cve-2020-29374", "-d", "linux-5.7", "--save-trace", str(t), "-q")
    assert r.exit_code == 1 and t.exists()      # a missed COW found (exit status 1; was 0)
    return t, t.read_text()


def test_replay_of_every_truncation(tmp_path):
    t, text = _saved_trace(tmp_path)
    assert _cli("replay", str(t)).exit_code == 1     # the replayed trace shows the missed COW (was 0)
    cuts = sorted(set(range(0, len(text), max(1, len(text) // 60))) - {len(text)})
    for n in cuts:
        t.write_text(text[:n])
        r = _cli("replay", str(t))
        assert r.exit_code == 2, n              # an input error (was 1)
        assert r.stderr.startswith(f"cowlab: error: {t}:") and r.stderr.strip().count("\n") == 0, (n, r.stderr)


@pytest.mark.parametrize("edit", [
    lambda d: [d], lambda d: dict(d, case=5), lambda d: dict(d, design=None), lambda d: dict(d, settings=[1]),
    lambda d: dict(d, trace=7), lambda d: dict(d, trace=[[0]]), lambda d: dict(d, trace=[["0", "x"]]),
    lambda d: dict(d, trace=[[99, None]]), lambda d: dict(d, trace=[[-1, None]]),
    lambda d: dict(d, trace=[[True, None]]), lambda d: {k: v for k, v in d.items() if k != "case"},
    lambda d: dict(d, trace=[[0, "no.such.label"]]), lambda d: dict(d, case="no-such-case"),
    lambda d: dict(d, case="/nonexistent.toml")])
def test_replay_of_a_malformed_trace(tmp_path, edit):
    t, text = _saved_trace(tmp_path)
    t.write_text(json.dumps(edit(json.loads(text))))
    r = _cli("replay", str(t))
    assert r.exit_code == 2 and r.stderr.startswith("cowlab: error: ") and r.stderr.strip().count("\n") == 0


def test_replay_of_bytes(tmp_path):
    t = tmp_path / "t.json"
    for data in (b"\xff\xfe", b"[" * 100_000, b""):
        t.write_bytes(data)
        r = _cli("replay", str(t))
        assert r.exit_code == 2 and r.stderr.startswith(f"cowlab: error: {t}:")    # input error (was 1)


_HOOK = """
import builtins, runpy, sys
real = builtins.__import__
def hook(name, *a, **k):
    if name == {mod!r}:
        raise KeyboardInterrupt
    return real(name, *a, **k)
builtins.__import__ = hook
sys.argv = ["cowlab", "designs"]
runpy.run_module({entry!r}, run_name="__main__")
"""


@pytest.mark.parametrize("entry, mod", [("cowlab.cli", "rich.table"), ("cowlab.cli", "click"),
                                        ("cowlab", "click"), ("cowlab", "cli")])
def test_ctrl_c_while_importing(entry, mod):
    """Ctrl-C while the modules load (simulated: an import raises
    KeyboardInterrupt) is one line and a non-zero exit, for both entries
    (``python -m cowlab.cli`` and the ``cowlab`` command, cowlab.__main__)."""
    p = subprocess.run([sys.executable, "-c", _HOOK.format(mod=mod, entry=entry)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 130, p.stderr
    assert p.stderr == "cowlab: interrupted\n"
