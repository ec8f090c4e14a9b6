"""Shell completion for transfer-cli: scripts made from its parser, run in real bash (and fish, zsh when present)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from transfer.client import completion
from transfer.client.cli import build_parser, main

BASH = shutil.which("bash")
ZSH = shutil.which("zsh")
FISH = shutil.which("fish")


def _script(shell: str) -> str:
    return completion.script(shell, build_parser())


def _commands() -> list[str]:
    return [c.name for c in completion.describe(build_parser()).commands]


def complete_bash(*words: str, cwd: Path | None = None, script: str | None = None) -> list[str]:
    """COMPREPLY for `words` (the last one is the word at the cursor), the script loaded into a real bash."""
    assert BASH is not None
    program = (
        script or _script("bash")
    ) + '\nCOMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _transfer_cli; printf "%s\\n" "${COMPREPLY[@]}"\n'
    done = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program, "bash", *words],
        capture_output=True, text=True, cwd=cwd, timeout=60, check=True,
    )  # fmt: skip
    assert done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@needs_bash
def test_bash_completes_command_names() -> None:
    """A prefix completes to the commands it starts, also after global options and a host:port split at its colon."""
    assert complete_bash("transfer-cli", "rec") == ["record-register", "record-get", "record-list"]
    assert complete_bash("transfer-cli", "") == _commands()
    # bash splits 127.0.0.1:50051 at the colon (COMP_WORDBREAKS): the value is still one word, not a command
    line = ["transfer-cli", "--address", "127.0.0.1", ":", "50051", "--as", "school-S1", "page-s"]
    assert complete_bash(*line) == ["page-sign"]


@needs_bash
def test_bash_completes_a_commands_options() -> None:
    """After a command, `-` completes that command's options (not the global ones), before the command the global ones."""
    assert complete_bash("transfer-cli", "record-register", "--") == ["--help", "--json", "--school", "--request-id"]
    assert complete_bash("transfer-cli", "--pki", "pki", "school-list", "--") == [
        "--help",
        "--json",
        "--limit",
        "--all",
    ]
    assert complete_bash("transfer-cli", "--a") == ["--address", "--as", "--attempts"]
    assert complete_bash("transfer-cli", "--timeout", "") == []  # a number: nothing to offer


@needs_bash
def test_bash_completes_choices() -> None:
    """Options and positionals with choices complete their values: states, levels, departure reasons, shells."""
    assert complete_bash("transfer-cli", "list", "--state", "re") == ["rejected", "requested"]
    assert complete_bash("transfer-cli", "list", "--state", "=", "ac") == ["accepted"]  # --state=ac, split at '='
    assert complete_bash("transfer-cli", "list", "--state", "=") == [
        "accepted", "cancelled", "expired", "rejected", "requested",
    ]  # fmt: skip
    # the level is record-register's third positional, wherever the options go
    level = ["lower-secondary", "primary", "upper-secondary"]
    assert complete_bash("transfer-cli", "record-register", "--school", "S1", "abc", "123", "") == level
    assert complete_bash("transfer-cli", "record-register", "abc", "") == []  # the national id: no guesses
    assert complete_bash("transfer-cli", "depart", "GV-LAN", "--reason", "re") == ["resignation", "retirement"]
    assert complete_bash("transfer-cli", "completion", "") == ["bash", "zsh", "fish"]


@needs_bash
def test_bash_runs_nothing_the_typed_words_hold(tmp_path: Path) -> None:
    """Words with command substitutions, quotes and globs, at the cursor or before it, match nothing and run nothing."""
    hostile = ["$(touch ran1)", "`touch ran2`", "'; touch ran3; '", "*", "--state=$(touch ran4)"]
    for word in hostile:
        assert complete_bash("transfer-cli", "list", "--state", word, cwd=tmp_path) == []
        assert complete_bash("transfer-cli", word, cwd=tmp_path) == []
        complete_bash("transfer-cli", word, "--", cwd=tmp_path)  # a word before the cursor: read, not run
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@needs_bash
def test_bash_completes_file_names_where_a_file_is_taken(tmp_path: Path) -> None:
    """--ca, --cert, --key, a page's payload and --cert of teacher-register complete file names; --pki directories."""
    for name in ("ca.pem", "cert.pem", "notes.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    (tmp_path / "certs").mkdir()
    assert sorted(complete_bash("transfer-cli", "--ca", "c", cwd=tmp_path)) == ["ca.pem", "cert.pem", "certs"]
    assert complete_bash("transfer-cli", "--pki", "c", cwd=tmp_path) == ["certs"]
    page_add = ["transfer-cli", "page-add", "abc", "2026-2027", "5", "5A", "n"]
    assert complete_bash(*page_add, cwd=tmp_path) == ["notes.txt"]
    assert complete_bash("transfer-cli", "teacher-register", "GV-LAN", "Lan", "--cert", "n", cwd=tmp_path) == [
        "notes.txt"
    ]
    assert complete_bash("transfer-cli", "record-get", "c", cwd=tmp_path) == []  # a lookup code is no file


def test_every_command_is_in_every_shells_script() -> None:
    """Each shell's script names every command of the parser, so a new command cannot be left out of completion."""
    names = _commands()
    assert {"initiate", "record-list", "page-sign", "completion"} <= set(names)
    bash, zsh, fish = (_script(shell) for shell in completion.SHELLS)
    for name in names:
        assert re.search(rf"compgen -W '[^']*\b{re.escape(name)}\b", bash), name
        assert f"\n        '{name}') echo" in bash, name  # its options
        assert f"\n    '{name}:" in zsh and f"\n        '{name}')\n" in zsh, name  # described, and its arguments
        assert f"-n '_transfer_cli_at -' -a '{name}' -d" in fish, name


def test_completion_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    """`transfer-cli completion SHELL` prints that shell's script and exits 0, with no node and no credentials."""
    for shell in completion.SHELLS:
        assert main(["completion", shell]) == 0
        got = capsys.readouterr()
        assert got.out == _script(shell) and got.err == ""
    with pytest.raises(SystemExit) as info:
        main(["completion", "tcsh"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_the_generator_reads_any_parser(tmp_path: Path) -> None:
    """describe() finds commands, files (Path, FileType, FILE), directories (DIR), choices, switches and exclusions."""
    p = argparse.ArgumentParser(prog="tool")
    p.add_argument("--config", type=Path)
    p.add_argument("-v", "--verbose", action="count")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("run", help="run: it [now]")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--fast", action="store_true")
    g.add_argument("--slow", action="store_true")
    s.add_argument("--log", type=argparse.FileType("w"))
    s.add_argument("--into", metavar="DIR")
    s.add_argument("--secret", help=argparse.SUPPRESS)
    s.add_argument("mode", choices=["a", "b"])
    s.add_argument("inputs", nargs="*", metavar="FILE")
    tool = completion.describe(p)
    assert [o.flags for o in tool.options] == [("-h", "--help"), ("--config",), ("-v", "--verbose")]
    assert tool.options[1].value == completion.Value(kind="file") and tool.options[2].value is None
    (run,) = tool.commands
    assert run.name == "run" and run.help == "run: it [now]"
    by_flag = {o.flags[-1]: o for o in run.options}
    assert "--secret" not in by_flag and by_flag["--fast"].excludes == ("--slow",)
    assert by_flag["--log"].value == completion.Value(kind="file")
    assert by_flag["--into"].value == completion.Value(kind="dir")
    assert [(x.name, x.value, x.many) for x in run.positionals] == [
        ("mode", completion.Value(choices=("a", "b")), False),
        ("FILE", completion.Value(kind="file"), True),
    ]
    nested = argparse.ArgumentParser(prog="deep")
    inner = nested.add_subparsers().add_parser("a").add_subparsers()
    inner.add_parser("b")
    with pytest.raises(ValueError, match="commands within commands"):
        completion.describe(nested)
    with pytest.raises(ValueError, match="no completion for 'tcsh'"):
        completion.script("tcsh", p)
    if BASH is not None:  # the bash script of that parser: help text with brackets and colons does not matter
        (tmp_path / "in.csv").write_text("x", encoding="utf-8")
        script = completion.script("bash", p).replace("_tool", "_transfer_cli")
        assert complete_bash("tool", "run", "--fast", "a", "i", cwd=tmp_path, script=script) == ["in.csv"]
        assert complete_bash("tool", "run", "--", cwd=tmp_path, script=script) == [
            "--help", "--fast", "--slow", "--log", "--into",
        ]  # fmt: skip


# Drives an interactive zsh in a pseudo-terminal: $1 the script, $2 a file for the matches, $3 the line. TAB runs
# a widget that completes and then prints a marker; compadd also appends each match it adds to the file.
ZSH_HARNESS = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PROMPT=""; RPROMPT=""; autoload -U compinit; compinit -u -D'
zpty -w z "source ${(q)1}; __hits_file=${(q)2}"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a __hits; builtin compadd -A __hits "$@"; (( $#__hits )) && print -rl -- $__hits >> $__hits_file
  builtin compadd "$@" }'
zpty -w z '_capture() { zle complete-word; print -- "@@DONE""@@" }; zle -N _capture; bindkey "^I" _capture'
zpty -w z 'print -- "@@READY""@@"'
zpty -r z out '*@@READY@@*'
zpty -w -n z "$3"$'\t'
zpty -r z out '*@@DONE@@*'
zpty -d z
"""


@pytest.mark.skipif(ZSH is None, reason="zsh is not installed")
def test_zsh_script_completes_in_zsh(tmp_path: Path) -> None:
    """The zsh script parses (zsh -n), and an interactive zsh completes commands, options, choices and files with it."""
    assert ZSH is not None
    path = tmp_path / "_transfer-cli"
    path.write_text(_script("zsh"), encoding="utf-8")
    done = subprocess.run([ZSH, "-n", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")
    harness = tmp_path / "harness.zsh"
    harness.write_text(ZSH_HARNESS, encoding="utf-8")
    hits = tmp_path / "hits"

    def complete(line: str) -> list[str]:
        hits.unlink(missing_ok=True)
        subprocess.run(
            [ZSH, "-f", str(harness), str(path), str(hits), line],
            capture_output=True, cwd=tmp_path, timeout=60, check=True,
        )  # fmt: skip
        return sorted(set(hits.read_text(encoding="utf-8").split())) if hits.exists() else []

    assert complete("transfer-cli rec") == ["record-get", "record-list", "record-register"]
    assert complete("transfer-cli --address 127.0.0.1:50051 --as school-S1 page-s") == ["page-sign"]
    assert complete("transfer-cli --a") == ["--address", "--as", "--attempts"]
    assert complete("transfer-cli list --state=re") == ["rejected", "requested"]
    # --incoming and --outgoing exclude each other, --state may be given again
    assert complete("transfer-cli list --incoming --state accepted --") == [
        "--all", "--help", "--json", "--limit", "--school", "--state",
    ]  # fmt: skip
    assert complete("transfer-cli record-register abc 123 ") == ["lower-secondary", "primary", "upper-secondary"]
    assert complete("transfer-cli record-register abc ") == []
    assert complete("transfer-cli --ca c") == ["ca.pem"]


@pytest.mark.skipif(FISH is None, reason="fish is not installed")
def test_fish_script_completes_in_fish(tmp_path: Path) -> None:
    """The fish script parses (fish --no-execute) and fish completes commands, options, choices and files with it."""
    assert FISH is not None
    path = tmp_path / "transfer-cli.fish"
    path.write_text(_script("fish"), encoding="utf-8")
    done = subprocess.run([FISH, "--no-execute", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            [FISH, "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", str(path), line],
            capture_output=True, text=True, cwd=tmp_path, timeout=60, check=True,
        )  # fmt: skip
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert complete("transfer-cli rec") == ["record-get", "record-list", "record-register"]
    assert complete("transfer-cli --address 127.0.0.1:50051 --as school-S1 page-s") == ["page-sign"]
    assert complete("transfer-cli list --state re") == ["rejected", "requested"]
    assert complete("transfer-cli record-register abc 123 ") == ["lower-secondary", "primary", "upper-secondary"]
    assert complete("transfer-cli record-register abc ") == []
    assert complete("transfer-cli record-register --s") == ["--school"]
    assert complete("transfer-cli --ca c") == ["ca.pem"]
