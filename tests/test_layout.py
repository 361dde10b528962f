"""The package's shape: wings in one written order with every import pointing down it, the
lab (``studies``) imported by nothing else in the package, no import circles, no module
reaching into another's private names, launchers that are flags plus one library call and
import no other launcher."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules():
    out = {}
    for p in sorted((ROOT / "smec_jax").rglob("*.py")):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def imports(path: Path, known) -> tuple[set[str], list[str]]:
    """smec_jax modules imported by ``path`` (anywhere in it), and private names used."""
    tree = ast.parse(path.read_text())
    found, private = set(), []
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("smec_jax"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                found.add(full if full in known else node.module)
                if full in known:
                    aliases[a.asname or a.name] = full
                if a.name.startswith("_"):
                    private.append(full)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    found.add(a.name)
    for node in ast.walk(tree):  # module._private attribute access
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in aliases and node.attr.startswith("_"):
                private.append(f"{aliases[node.value.id]}.{node.attr}")
    return found, private


def test_no_import_circles_and_no_private_names():
    mods = modules()
    graph, bad = {}, []
    for name, path in mods.items():
        found, private = imports(path, mods)
        # a package importing its own submodules is how it registers them, not a circle
        graph[name] = {m for m in found if m != name and not m.startswith(name + ".")}
        bad += [f"{name} uses {p}" for p in private]
    assert not bad, bad

    def visit(node, stack):
        for nxt in graph[node]:
            assert nxt not in stack, " -> ".join([*stack, nxt])
            visit(nxt, [*stack, nxt])

    for name in graph:
        visit(name, [name])


# The wings, top to bottom: a module may import its own wing and the wings below it, never
# one above. Commands (the jobs behind ``launch/`` and the flag parsing) sit under the lab;
# plumbing (files, progress, devices, checkpoints) sits under everything.
ORDER = (
    "studies",
    "commands",
    "methods",
    "training",
    "evaluation",
    "serving",
    "datasets",
    "core",
    "plumbing",
)
COMMANDS = {"jobs", "cli", "api"}
PLUMBING = {"files", "progress", "parallel", "checkpoint", "interrupts"}


def wing(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top in COMMANDS:
        return "commands"
    if top in PLUMBING:
        return "plumbing"
    assert top in ORDER, f"{module}: in no wing (add it to one of {ORDER})"
    return top


def test_every_module_sits_in_a_wing_and_imports_point_down():
    mods = modules()
    bad = []
    for name, path in mods.items():
        if name == "smec_jax":
            continue
        here = ORDER.index(wing(name))
        for m in imports(path, mods)[0]:
            if m == "smec_jax":
                continue
            there = ORDER.index(wing(m))
            if there < here:
                bad.append(f"{name} ({ORDER[here]}) imports {m} ({ORDER[there]})")
    assert not bad, bad


def test_nothing_outside_studies_imports_it():
    mods = modules()
    bad = [
        f"{name} imports {m}"
        for name, path in mods.items()
        if not name.startswith("smec_jax.studies")
        for m in imports(path, mods)[0]
        if m.startswith("smec_jax.studies")
    ]
    assert not bad, bad


def test_the_wing_checks_fail_on_an_upward_import(tmp_path):
    """The two checks above see an import that points up (a mutation of the real tree)."""
    src = (ROOT / "smec_jax" / "core" / "retrieval.py").read_text()
    bad = tmp_path / "retrieval.py"
    bad.write_text(src + "\nfrom smec_jax.studies import pareto\n")
    found, _ = imports(bad, modules())
    assert "smec_jax.studies.pareto" in found
    assert ORDER.index(wing("smec_jax.studies.pareto")) < ORDER.index(
        wing("smec_jax.core.retrieval")
    )


def test_launchers_are_thin_and_import_no_launcher():
    for path in sorted((ROOT / "launch").glob("*.py")):
        if path.name == "__init__.py":
            continue
        text = path.read_text()
        assert len(text.splitlines()) <= 100, path.name
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("launch"), path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("launch") for a in node.names), path.name
        assert "cli.run_main(" in text, f"{path.name}: not flags plus one library call"
