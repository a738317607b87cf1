#!/usr/bin/env python3
"""Code map of src/: the imports between files and between layers.

Reads every `crate::a::b` path (use declarations and inline paths) and every
`super::` path in src/, maps each file to its module path, and prints
  - the import graph between top-level modules, with their layers;
  - every import that runs upward (to a higher layer);
  - every circle of imports between files (strongly connected components),
    not counting a parent module's `mod`/`pub use` of its own children.
Exits 1 when there is an upward import or a circle.

Usage: scripts/code_map.py [--files]   (--files also lists the file graph)
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# The layers, lowest first: a module may import its own layer's files and any
# lower layer's modules. Within a layer the modules are ordered too.
LAYERS = [
    ("base", ["error", "io", "seeds", "device", "progress", "alloc", "second_order"]),
    ("config", ["config"]),
    ("inputs and model", ["data", "text", "model"]),
    ("experiment", ["experiment"]),
    ("stage1", ["stage1"]),
    ("stage2", ["stage2"]),
    ("evaluate", ["evaluate"]),
    ("display", ["display"]),
    ("tuning", ["tune"]),
    ("pipeline", ["pipeline", "compare"]),
    ("notebook and binary", ["notebook", "bin"]),
]
RANK = {}
for i, (_, mods) in enumerate(LAYERS):
    for j, m in enumerate(mods):
        RANK[m] = (i, j)
# The base files share a layer without an order among them (a circle between
# them would still be reported).
BASE = set(LAYERS[0][1])


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    if rel and rel[0] == "bin":
        return ["bin"]
    return rel


def files():
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                yield os.path.join(root, n)


def strip_comments(text):
    # unit tests (a `#[cfg(test)] mod tests` at the end of a file) may reach
    # anywhere; they are not part of the layering
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def resolve(mod, parts, known):
    """The longest known module path that `parts` (after crate::) names."""
    for k in range(len(parts), 0, -1):
        if tuple(parts[:k]) in known:
            return tuple(parts[:k])
    return None


def main():
    paths = list(files())
    mods = {tuple(module_of(p)): p for p in paths}
    known = set(mods)
    edges = {}
    for m, p in mods.items():
        text = strip_comments(open(p).read())
        # expand `use crate::a::{b, c::d}` one level so each target is seen
        targets = set()
        for g in re.finditer(r"crate::((?:\w+::)*)\{([^}]*)\}", text):
            base = [x for x in g.group(1).split("::") if x]
            for item in g.group(2).split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    targets.add(resolve(m, base + item.split("::"), known))
                elif item == "self":
                    targets.add(resolve(m, base, known))
        for g in re.finditer(r"crate((?:::\w+)+)", text):
            targets.add(resolve(m, g.group(1).split("::")[1:], known))
        for g in re.finditer(r"\bsuper((?:::\w+)+)", text):
            parent = list(m[:-1]) if not p.endswith("mod.rs") else list(m[:-1])
            if not p.endswith("mod.rs"):
                parent = list(m[:-1])
            targets.add(resolve(m, parent + g.group(1).split("::")[1:], known))
        targets.discard(None)
        targets.discard(m)
        # a module's own children (declared with `mod`, re-exported) are its parts
        edges[m] = {t for t in targets if t[: len(m)] != m or len(m) == 0}
    problems = 0
    top = {}
    for m, ts in edges.items():
        for t in ts:
            a, b = (m[0] if m else "lib"), (t[0] if t else "lib")
            if a == b or a == "lib":
                continue
            top.setdefault((a, b), []).append(("/".join(m), "/".join(t)))
    print("Imports between top-level modules (layer: module → modules it imports):")
    by_src = {}
    for (a, b) in top:
        by_src.setdefault(a, set()).add(b)
    for name, ms in LAYERS:
        for mname in ms:
            if mname in by_src:
                print(f"  [{name}] {mname} → {', '.join(sorted(by_src[mname], key=lambda x: RANK.get(x, (99, 0))))}")
            elif mname in {m[0] for m in mods if m}:
                print(f"  [{name}] {mname} → (nothing of ours)")
    upward = []
    for (a, b), where in sorted(top.items()):
        ra, rb = RANK.get(a), RANK.get(b)
        if ra is None or rb is None:
            upward.append((a, b, where, "module in no layer"))
        elif a in BASE and b in BASE:
            continue  # unordered among themselves; a circle would show below
        elif rb >= ra:
            upward.append((a, b, where, "upward or sideways"))
    for a, b, where, why in upward:
        problems += 1
        print(f"UPWARD {a} → {b} ({why}): " + "; ".join(f"{x} → {y}" for x, y in where[:5]))
    # circles between files (Tarjan)
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            strong(v)
    for comp in sccs:
        problems += 1
        print("CIRCLE " + ", ".join(sorted("/".join(c) or "lib" for c in comp)))
    if "--files" in sys.argv:
        for m in sorted(edges):
            print("/".join(m) or "lib", "→", ", ".join(sorted("/".join(t) for t in edges[m])))
    print(f"{len(mods)} files; {sum(len(v) for v in edges.values())} imports between files; "
          f"{len(upward)} upward; {len(sccs)} circles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
