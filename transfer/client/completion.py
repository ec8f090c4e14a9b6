"""Shell completion scripts for bash, zsh and fish, made from an argparse parser: parser in, text out.

`transfer-cli completion bash|zsh|fish` prints one. The script is read from the very parser the command
parses its line with, so it names every command, option and choice the command takes and cannot fall
behind it. What completes:

* command names (with their help in zsh and fish), then the options of the command on the line;
* an option's or a positional's `choices`;
* file names for an option or positional whose `type` is `pathlib.Path` or an `argparse.FileType`, or whose
  metavar is `FILE`; directory names where the metavar is `DIR`;
* nothing for other values (ids, codes, addresses): the shell offers no guesses for them.

One level of commands is understood (`tool [options] command [options and arguments]`), as argparse's
subparsers make it; options given as `--option=value` are read in bash and zsh, abbreviated options are not,
and choices are taken to be single words (bash and fish would split one with a space).
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")


@dataclass(frozen=True)
class Value:
    """What the value of an option, or a positional, can be: one of `choices`, a file, a directory, or text."""

    choices: tuple[str, ...] = ()
    kind: str = "text"  # "text" | "file" | "dir"

    @property
    def completes(self) -> bool:
        return bool(self.choices) or self.kind != "text"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str
    value: Value | None  # None: a switch, taking no value
    repeatable: bool = False
    excludes: tuple[str, ...] = ()  # the flags of the options it cannot be given with (its exclusive groups)
    final: bool = False  # --help, --version: the command ends there


@dataclass(frozen=True)
class Positional:
    name: str
    help: str
    value: Value
    many: bool = False  # nargs * or +: it takes every word from here on


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]
    commands: tuple[Command, ...] = ()


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        with contextlib.suppress(KeyError, TypeError, ValueError):  # a literal % that is no placeholder
            text = text % {**vars(action), "prog": prog}
    return " ".join(text.split())


def _value(action: argparse.Action) -> Value:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        return Value(choices=tuple(str(c) for c in action.choices))
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar == "DIR":
        return Value(kind="dir")
    if action.type is Path or isinstance(action.type, argparse.FileType) or metavar == "FILE":
        return Value(kind="file")
    return Value()


_SWITCHES = (
    argparse._StoreConstAction,  # store_true, store_false
    argparse._AppendConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
)


def describe(parser: argparse.ArgumentParser, name: str = "", help_: str = "") -> Command:
    """The parser's commands, options and positionals (argparse has no public way to list them: this is it)."""
    exclusive: dict[str, set[str]] = {}
    for group in parser._mutually_exclusive_groups:
        group_flags = {f for a in group._group_actions for f in a.option_strings}
        for f in group_flags:
            exclusive.setdefault(f, set()).update(group_flags - {f})
    options: list[Option] = []
    positionals: list[Positional] = []
    commands: list[Command] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for sub_name, sub in action.choices.items():
                sub_help = helps.get(sub_name) or sub.description or ""
                command = describe(sub, sub_name, " ".join(sub_help.split()))
                if command.commands:
                    raise ValueError(f"{parser.prog} {sub_name}: commands within commands are not supported")
                commands.append(command)
        elif action.option_strings:
            flags = tuple(action.option_strings)
            options.append(
                Option(
                    flags=flags,
                    help=_help(action, parser.prog),
                    value=None if isinstance(action, _SWITCHES) or action.nargs == 0 else _value(action),
                    repeatable=isinstance(action, argparse._AppendAction | argparse._CountAction),
                    excludes=tuple(sorted(set().union(*(exclusive.get(f, set()) for f in flags)))),
                    final=isinstance(action, argparse._HelpAction | argparse._VersionAction),
                )
            )
        else:
            label = action.metavar if isinstance(action.metavar, str) else action.dest
            positionals.append(
                Positional(label, _help(action, parser.prog), _value(action), many=action.nargs in ("*", "+"))
            )
    return Command(name or parser.prog, help_ or " ".join((parser.description or "").split()), tuple(options),
                   tuple(positionals), tuple(commands))  # fmt: skip


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script of `parser`'s program for `shell` (bash, zsh or fish)."""
    makers: dict[str, Callable[[Command], str]] = {"bash": bash, "zsh": zsh, "fish": fish}
    if shell not in makers:
        raise ValueError(f"no completion for {shell!r}: one of {', '.join(SHELLS)}")
    return makers[shell](describe(parser))


def _ident(prog: str) -> str:
    """A shell function name made from the program's name: transfer-cli -> _transfer_cli."""
    return "_" + re.sub(r"\W", "_", prog)


def _levels(tool: Command) -> list[tuple[str, Command]]:
    """The tool itself (as the command "") and each of its commands."""
    return [("", tool), *((c.name, c) for c in tool.commands)]


def _words(items: Iterable[str]) -> str:
    return " ".join(items)


# bash ----------------------------------------------------------------------------------------------------------


def _bash_what(value: Value) -> str:
    if value.choices:
        return "choices " + _words(value.choices)
    return value.kind


def _bash_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def bash(tool: Command) -> str:
    f = _ident(tool.name)
    option_cases: list[str] = []
    options_of: list[str] = []
    positional_cases: list[str] = []
    for name, c in _levels(tool):
        for o in c.options:
            if o.value is not None:
                pattern = "|".join(_bash_quote(f"{name} {flag}") for flag in o.flags)
                option_cases.append(f"        {pattern}) echo {_bash_quote(_bash_what(o.value))} ;;")
        flags = [flag for o in c.options for flag in o.flags]
        options_of.append(f"        {_bash_quote(name)}) echo {_bash_quote(_words(flags))} ;;")
        many = any(p.many for p in c.positionals)  # then each one is named, for the * after them to match the rest
        for i, p in enumerate(c.positionals):
            if not p.value.completes and not many:
                continue
            pattern = _bash_quote(f"{name} ") + ("*" if p.many else str(i))
            positional_cases.append(f"        {pattern}) echo {_bash_quote(_bash_what(p.value))} ;;")
    commands = _words(c.name for c in tool.commands)
    return f"""\
# bash completion for {tool.name}, made from its argument parser by `{tool.name} completion bash`.
# Install: {tool.name} completion bash > ~/.local/share/bash-completion/completions/{tool.name}
#     (or /etc/bash_completion.d/{tool.name}); for this shell only: source <({tool.name} completion bash)

{f}_option() {{  # $1 the command ("" before it), $2 an option: what its value is, or status 1 for a switch
    case "$1 $2" in
{chr(10).join(option_cases)}
        *) return 1 ;;
    esac
}}

{f}_options() {{  # $1 the command ("" before it): its options
    case "$1" in
{chr(10).join(options_of)}
    esac
}}

{f}_positional() {{  # $1 the command, $2 how many of its positionals are given: what the next one is
    case "$1 $2" in
{chr(10).join(positional_cases)}
        *) echo text ;;
    esac
}}

{f}_reply() {{  # $1 what the word is (choices WORD..., file, dir, text), $2 the word so far
    case "$1" in
        "choices "*) mapfile -t COMPREPLY < <(compgen -W "${{1#choices }}" -- "$2") ;;
        file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$2") ;;
        dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$2") ;;
        *) COMPREPLY=() ;;
    esac
}}

{f}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" expect="" word i n=0 rest="" glue=""
    local -a words=()
    COMPREPLY=()
    # The words before the cursor, with what COMP_WORDBREAKS split at a colon joined again (host:port).
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ ${{#words[@]}} -gt 0 && ($word == ":" || -n $glue) ]]; then
            words[${{#words[@]}} - 1]+=$word
            [[ $word == ":" ]] && glue=1 || glue=""
        else
            words+=("$word")
            glue=""
        fi
    done
    # Then the command, how many positionals it has, and an option awaiting its value.
    for word in "${{words[@]}}"; do
        if [[ $word == "=" && -n $expect ]]; then continue; fi  # --option=value, split by COMP_WORDBREAKS
        if [[ -n $expect ]]; then expect=""; continue; fi
        if [[ -z $rest && $word == "--" ]]; then rest=1; continue; fi
        if [[ -z $rest && $word == -* ]]; then
            {f}_option "$cmd" "$word" >/dev/null && expect=$word
        elif [[ -z $cmd ]]; then
            cmd=$word
        else
            n=$((n + 1))
        fi
    done
    [[ $cur == "=" && -n $expect ]] && cur=""
    if [[ -n $expect ]]; then
        {f}_reply "$({f}_option "$cmd" "$expect")" "$cur"
    elif [[ -z $rest && $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$({f}_options "$cmd")" -- "$cur")
    elif [[ -z $cmd ]]; then
        mapfile -t COMPREPLY < <(compgen -W {_bash_quote(commands)} -- "$cur")
    else
        {f}_reply "$({f}_positional "$cmd" "$n")" "$cur"
    fi
    return 0
}}

complete -F {f} {tool.name}
"""


# zsh -----------------------------------------------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_text(text: str) -> str:
    """Help text inside an _arguments spec: brackets and colons escaped."""
    return re.sub(r"([\[\]:\\])", r"\\\1", text)


def _zsh_action(value: Value, label: str) -> str:
    message = _zsh_text(label.replace("_", " ").lower())
    if value.choices:
        return f"{message}:(" + " ".join(re.sub(r"([\s()\\:'])", r"\\\1", c) for c in value.choices) + ")"
    return message + {"file": ":_files", "dir": ":_files -/"}.get(value.kind, ": ")


def _zsh_option(o: Option) -> list[str]:
    if o.final:
        excl = "(- *)"
    elif o.excludes or not o.repeatable:
        excl = "(" + " ".join(sorted({*o.excludes, *([] if o.repeatable else o.flags)})) + ")"
    else:
        excl = ""
    star = "*" if o.repeatable else ""
    label = o.flags[-1].lstrip("-")
    out = []
    for flag in o.flags:
        spec = f"{excl}{star}{flag}"
        if o.value is not None:
            spec += "=" if flag.startswith("--") else "+"
        spec += f"[{_zsh_text(o.help)}]"
        if o.value is not None:
            spec += ":" + _zsh_action(o.value, label)
        out.append(spec)
    return out


def _zsh_specs(c: Command, indent: str) -> str:
    specs = [s for o in c.options for s in _zsh_option(o)]
    for p in c.positionals:
        specs.append(("*:" if p.many else ":") + _zsh_action(p.value, p.name))
    return f" \\\n{indent}".join(_zsh_quote(s) for s in specs)


def zsh(tool: Command) -> str:
    f = _ident(tool.name)
    described = "\n".join("    " + _zsh_quote(c.name.replace(":", "\\:") + ":" + c.help) for c in tool.commands)
    cases = "\n".join(
        f"        {_zsh_quote(c.name)})\n"
        f"          _arguments -s -S \\\n            {_zsh_specs(c, '            ')} && ret=0 ;;"
        for c in tool.commands
    )
    return f"""\
#compdef {tool.name}
# zsh completion for {tool.name}, made from its argument parser by `{tool.name} completion zsh`.
# Install: {tool.name} completion zsh > "${{fpath[1]}}/_{tool.name}" (a directory in $fpath, before compinit runs),
#     or for this shell only, after compinit: source <({tool.name} completion zsh)

{f}_commands() {{
  local -a commands=(
{described}
  )
  _describe -t commands {_zsh_quote(tool.name + " command")} commands
}}

{f}() {{
  local curcontext="$curcontext" state state_descr line ret=1
  typeset -A opt_args
  _arguments -C -s -S \\
    {_zsh_specs(tool, "    ")} \\
    ': :{f}_commands' \\
    '*:: :->command' && ret=0
  if [[ $state == command ]]; then
    curcontext="${{curcontext%:*:*}}:{tool.name}-$words[1]:"
    case $words[1] in
{cases}
    esac
  fi
  return ret
}}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  {f} "$@"
else
  compdef {f} {tool.name}
fi
"""


# fish ----------------------------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_value(value: Value) -> str:
    if value.choices:
        return "-x -a " + _fish_quote(_words(value.choices))
    if value.kind == "file":
        return "-r -F"
    if value.kind == "dir":
        return "-x -a '(__fish_complete_directories (commandline -ct))'"
    return "-x"


def fish(tool: Command) -> str:
    f = _ident(tool.name)
    takes_value = [
        _fish_quote((name or "-") + " " + flag)
        for name, c in _levels(tool)
        for o in c.options
        if o.value is not None
        for flag in o.flags
    ]
    lines: list[str] = []
    for name, c in _levels(tool):
        at = _fish_quote(f"{f}_at {name or '-'}")
        for o in c.options:
            flags = " ".join(
                (f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
                if len(flag) == 2 or flag.startswith("--")
                else f"-o {flag[1:]}"
                for flag in o.flags
            )
            value = "" if o.value is None else " " + _fish_value(o.value)
            lines.append(f"complete -c {tool.name} -n {at} {flags}{value} -d {_fish_quote(o.help)}")
        for i, p in enumerate(c.positionals):
            if not p.value.completes:
                continue
            where = _fish_quote(f"{f}_at {name} {'*' if p.many else i}")
            what = "-F" if p.value.kind == "file" else _fish_value(p.value).removeprefix("-x ")
            lines.append(f"complete -c {tool.name} -n {where} {what} -d {_fish_quote(p.name)}")
    for c in tool.commands:
        lines.append(f"complete -c {tool.name} -n '{f}_at -' -a {_fish_quote(c.name)} -d {_fish_quote(c.help)}")
    return f"""\
# fish completion for {tool.name}, made from its argument parser by `{tool.name} completion fish`.
# Install: {tool.name} completion fish > ~/.config/fish/completions/{tool.name}.fish

function {f}_state --description 'the command on the line (- for none) and how many positionals it has, or value'
    set -l cmd -
    set -l n 0
    set -l expect 0
    set -l rest 0
    set -l words (commandline -opc)
    set -e words[1]
    for word in $words
        if test $expect = 1
            set expect 0
        else if test $rest = 0 -a "$word" = --
            set rest 1
        else if test $rest = 0; and string match -q -- '-*' $word
            contains -- "$cmd $word" {" ".join(takes_value)}; and set expect 1
        else if test $cmd = -
            set cmd $word
        else
            set n (math $n + 1)
        end
    end
    echo $cmd
    if test $expect = 1
        echo value
    else
        echo $n
    end
end

function {f}_at --description 'the line is at this command (and, given, at this positional: a number or *)'
    set -l state ({f}_state)
    test "$state[1]" = "$argv[1]"; or return 1
    set -q argv[2]; or return 0
    test "$state[2]" != value; or return 1
    test "$argv[2]" = '*' -o "$state[2]" = "$argv[2]"
end

complete -c {tool.name} -f
{chr(10).join(lines)}
"""
