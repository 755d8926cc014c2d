#!/usr/bin/env python3
"""Fails when a crate's source files import each other in a cycle.

Usage: scripts/check-module-cycles.py CRATE_SRC_DIR...

Each non-test .rs file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`).
A file depends on every module it names through `crate::`, `super::` or
`self::` paths (use lines and inline paths, `{...}` groups expanded),
except its own ancestors (a module may use what its parent re-exports).
Cycles among those dependencies are printed, one strongly connected group
per line, and the exit status is 1. Test modules (`tests`, `*_tests`,
`testutil`, and code after `#[cfg(test)] mod tests {`) are left out: tests
may reach anywhere.
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)(?:::\{([^;]*?)\})?")


def module_of(root, path):
    parts = os.path.relpath(path, root)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def is_test(module):
    return any(p == "tests" or p.endswith("_tests") or p == "testutil" for p in module)


def dependencies(module, text, modules):
    cut = text.find("#[cfg(test)]\nmod tests {")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"//.*", "", text)
    found = set()
    for m in PATH.finditer(text):
        base, rest = m.group(1), [p for p in m.group(2).split("::") if p]
        if base == "crate":
            parts = rest
        elif base == "super":
            parent = list(module[:-1])
            while rest and rest[0] == "super":
                parent, rest = parent[:-1], rest[1:]
            parts = parent + rest
        else:
            parts = list(module) + rest
        paths = [parts]
        for item in (m.group(3) or "").split(","):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self":
                paths.append(parts + item.split("::"))
        for p in paths:
            target = next(
                (tuple(p[:i]) for i in range(len(p), 0, -1) if tuple(p[:i]) in modules),
                None,
            )
            ancestor = target is not None and module[: len(target)] == target
            if target and target != module and not ancestor:
                found.add(target)
    return found


def cycles(edges):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(roots):
    failed = False
    for root in roots:
        files = [
            os.path.join(d, f)
            for d, _, names in os.walk(root)
            for f in names
            if f.endswith(".rs")
        ]
        modules = {module_of(root, f): f for f in files}
        edges = {
            m: dependencies(m, open(f, encoding="utf-8").read(), modules)
            for m, f in modules.items()
            if m and not is_test(m)
        }
        for group in cycles(edges):
            failed = True
            names = " <-> ".join("::".join(m) for m in group)
            print(f"{root}: import cycle: {names}")
    if not failed:
        print(f"no import cycles in {' '.join(roots)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
