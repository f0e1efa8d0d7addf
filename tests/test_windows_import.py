"""The app starts where POSIX-only modules and calls do not exist (Windows).

One subprocess makes `resource`, `fcntl`, `termios`, `pwd` and `grp` unimportable before anything else
loads, imports every module of the package (the window's too) and runs every command's `--help`.
A static scan flags POSIX-only calls that no `hasattr`/`sys.platform`/`os.name` test or try/except guards.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import demofusion_app

PACKAGE = Path(demofusion_app.__file__).parent
POSIX_MODULES = ("resource", "fcntl", "termios", "pwd", "grp")

# Attributes that exist only on POSIX (absent from `os` / `signal` on Windows).
POSIX_ONLY = {
    "os": {
        "getuid", "geteuid", "getgid", "getegid", "getgroups", "setuid", "setgid", "seteuid",
        "fork", "forkpty", "setsid", "getsid", "setpgid", "getpgid", "getpgrp", "killpg",
        "mkfifo", "mknod", "statvfs", "fstatvfs", "chown", "lchown", "fchown", "getloadavg",
        "nice", "sync", "wait3", "wait4", "openpty", "sched_getaffinity", "getpriority",
        "setpriority", "pipe2", "uname", "ttyname", "ctermid", "fchmod", "lchmod", "WNOHANG",
        "O_NOFOLLOW", "O_DIRECTORY", "O_CLOEXEC", "sysconf", "pathconf",
    },
    "signal": {
        "SIGKILL", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM", "SIGCHLD", "SIGPIPE",
        "SIGSTOP", "SIGCONT", "SIGTSTP", "SIGWINCH", "SIGTTIN", "SIGTTOU", "alarm", "setitimer",
        "getitimer", "pause", "sigwait", "pthread_kill", "pthread_sigmask", "siginterrupt",
    },
}  # fmt: skip

_CHILD = textwrap.dedent(
    """
    import argparse, importlib, importlib.abc, os, pkgutil, sys

    BLOCKED = {blocked!r}

    class _PosixOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"No module named {{name!r}} (as on Windows)", name=name)
            return None

    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, _PosixOnly())

    import demofusion_app

    failed = []
    for info in pkgutil.walk_packages(demofusion_app.__path__, "demofusion_app."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"import {{info.name}}: {{type(exc).__name__}}: {{exc}}")

    from demofusion_app import __main__ as entry, cli

    def commands(parser, words):
        yield words
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, [*words, name])

    runs = [lambda: entry.main(["--help"])]
    runs += [lambda w=w: cli.main([*w, "--help"]) for w in commands(cli.build_parser(), [])]
    for run in runs:
        try:
            run()
            failed.append("--help returned instead of exiting")
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(f"--help exited {{exc.code}}")
        except Exception as exc:
            failed.append(f"--help: {{type(exc).__name__}}: {{exc}}")
    print(f"RAN {{len(runs)}} HELPS", file=sys.stderr)
    print("\\n".join(failed), file=sys.stderr)
    sys.exit(1 if failed else 0)
    """
)


def test_every_module_and_help_works_without_posix_only_modules(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DEMOFUSION_STUDIO_HOME=str(tmp_path))
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(blocked=set(POSIX_MODULES))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    assert "RAN" in child.stderr


# --- the static scan -------------------------------------------------------------------------------


def _mentions_guard(test: ast.AST) -> bool:
    """True when an expression asks which platform this is: hasattr(...), sys.platform, os.name."""
    platform = {("sys", "platform"), ("os", "name"), ("platform", "system")}
    for node in ast.walk(test):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
            return True
        if (
            isinstance(node, ast.Attribute)
            and (getattr(node.value, "id", None), node.attr) in platform
        ):
            return True
    return False


def _exits(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Return, ast.Raise, ast.Continue))


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, (ast.If, ast.IfExp, ast.While)) and _mentions_guard(parent.test):
            return True
        if isinstance(parent, ast.Try) and parent.handlers and child in parent.body:
            return True
        if isinstance(parent, ast.BoolOp):
            index = parent.values.index(child) if child in parent.values else 0
            if any(_mentions_guard(v) for v in parent.values[:index]):
                return True
        # An early `if not <guard>: return` before this statement guards the rest of the block.
        for field in ("body", "orelse", "finalbody"):
            block = getattr(parent, field, None)
            if isinstance(block, list) and child in block:
                for earlier in block[: block.index(child)]:
                    if (
                        isinstance(earlier, ast.If)
                        and _mentions_guard(earlier.test)
                        and _exits(earlier.body)
                    ):
                        return True
        child, parent = parent, parents.get(parent)
    return False


def posix_only_uses(source: str, filename: str = "<source>") -> list[str]:
    """`file:line what` for each unguarded POSIX-only module import or os/signal attribute."""
    tree = ast.parse(source, filename)
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import):
            names = [a.name.partition(".")[0] for a in node.names]
            what = next((f"import {n}" for n in names if n in POSIX_MODULES), None)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.partition(".")[0]
            if node.level == 0 and root in POSIX_MODULES:
                what = f"from {node.module} import"
            elif node.level == 0 and root in POSIX_ONLY:
                bad = [a.name for a in node.names if a.name in POSIX_ONLY[root]]
                what = f"from {root} import {', '.join(bad)}" if bad else None
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            what = f"{node.value.id}.{node.attr}"
            what = what if node.attr in POSIX_ONLY.get(node.value.id, ()) else None
        if what and not _guarded(node, parents):
            found.append((node.lineno, f"{filename}:{node.lineno} {what}"))
    return [text for _, text in sorted(found)]


def test_scan_flags_unguarded_and_passes_guarded_uses() -> None:
    source = textwrap.dedent(
        """
        import os, signal, sys
        import resource
        os.kill(1, signal.SIGKILL)
        if hasattr(os, "getuid"):
            os.getuid()
        if sys.platform != "win32":
            os.fork()
        try:
            import fcntl
        except ImportError:
            pass
        x = os.getpgid(0) if os.name == "posix" else 0
        ok = hasattr(signal, "SIGHUP") and signal.SIGHUP

        def f():
            if os.name != "posix":
                return
            os.setsid()

        def g():
            os.statvfs("/")
        """
    )
    flagged = posix_only_uses(source)
    assert [line.split(" ", 1)[1] for line in flagged] == [
        "import resource",
        "signal.SIGKILL",
        "os.statvfs",
    ], flagged


def test_no_unguarded_posix_only_calls_in_the_package() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += posix_only_uses(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert not found, "POSIX-only, unguarded (guard with sys.platform/os.name/hasattr):\n" + (
        "\n".join(found)
    )
