"""Sphinx glue for the book's API reference (loaded through ``local_extensions`` in ``_config.yml``).

Four things, each so that ``jupyter-book build . -W -n`` stays strict about what matters:

1. **Docstrings written as plain text.** medtut's docstrings are read in editors as much as on these
   pages, so they write ``|x - y|``, ``a * b`` and indented continuation lines that reStructuredText
   reads as substitutions, emphasis or block quotes. Before autodoc renders a docstring, each top-level
   paragraph that docutils would warn about is escaped (``|`` and stray ``*``) or, when escaping does
   not help, shown verbatim as a literal block. Directives (``.. math::``) and valid paragraphs are left
   exactly as written, so equations render as maths. Nothing is dropped.
2. **Names resolve the way Python resolves them.** A role such as ``:func:`fit``` inside
   ``medtut.mr_sampling`` names what that module imported (``medtut.train.fit``): an unresolved Python
   reference is looked up as an attribute of the module it was written in and, if that object is
   documented under its own name, linked there. A short name the module does not import is linked when
   exactly one documented medtut object of the role's kind has it. A name that exists but is deliberately
   not part of the reference (a private constant, a ``TypeVar``) renders as code without a link. A name
   that does not exist, or is ambiguous, still fails the build.
3. **sphinx-codeautolink and sphinx-exercise.** codeautolink keeps a stack of section titles and pops
   one at the end of every section; sphinx-exercise wraps an exercise's body in a section without a
   title, so the stack ran empty (``IndexError: pop from empty list``). Such a section now pushes its
   parent's title.
4. **Public constants.** autodoc documents a module constant only when it has a ``#:`` comment; here
   every constant a module lists in ``__all__`` is documented, its value shown when it is short.
"""
from __future__ import annotations

import importlib
import io
import re

from docutils import nodes

# ---------------------------------------------------------------------------------------------------
# 1. plain-text docstrings
# ---------------------------------------------------------------------------------------------------

# spans whose content reStructuredText leaves alone: ``literal``, :role:`target`, `interpreted`
_PROTECTED = re.compile(r"(:[\w:+.-]+:`[^`]*`|``[^`]*``|`[^`]*`_{0,2})")
_PLACEHOLDER = "``x``"


def _rst_problems(text: str) -> str:
    """docutils' warnings for ``text`` parsed on its own (roles replaced, so Sphinx roles do not count)."""
    from docutils.core import publish_doctree

    stream = io.StringIO()
    probe = _PROTECTED.sub(_PLACEHOLDER, text)
    publish_doctree(probe, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream,
                                               "file_insertion_enabled": False, "raw_enabled": False})
    return stream.getvalue()


def _escape(text: str, stars: str) -> str:
    """Escape ``|`` (and ``*``: ``"lone"`` ones not doubled, or ``"all"``) outside protected spans."""
    def fix(segment: str) -> str:
        segment = segment.replace("|", r"\|")
        if stars == "all":
            segment = segment.replace("*", r"\*")
        elif stars == "lone":
            segment = re.sub(r"(?<![*\\])\*(?!\*)", r"\*", segment)
        return segment

    parts = _PROTECTED.split(text)
    return "".join(p if i % 2 else fix(p) for i, p in enumerate(parts))


def _blocks(lines: list[str]) -> list[list[str]]:
    """Top-level blocks: split at blank lines followed by an unindented line (directives stay whole)."""
    blocks, current = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            nxt = next((l for l in lines[i + 1:] if l.strip()), None)
            if current and (nxt is None or not nxt[:1].isspace()):
                blocks.append(current)
                current = []
                continue
        current.append(line)
    if current:
        blocks.append(current)
    return blocks


def plain_text_safe(lines: list[str]) -> list[str]:
    """``lines`` of a docstring with each paragraph that docutils would warn about made safe."""
    blocks = _blocks(lines)
    prose = [line for block in blocks if not block[0].lstrip().startswith(".. ") for line in block + [""]]
    if not _rst_problems("\n".join(prose)):
        return lines                    # most docstrings: one parse, nothing to change
    out: list[str] = []
    for block in blocks:
        text = "\n".join(block)
        if block[0].lstrip().startswith(".. ") or not _rst_problems(text):
            fixed = block
        else:
            for stars in ("none", "lone", "all"):
                candidate = _escape(text, stars)
                if not _rst_problems(candidate):
                    fixed = candidate.split("\n")
                    break
            else:
                fixed = [".. code-block:: text", ""] + ["    " + line for line in block]
        out.extend(fixed)
        out.append("")
    return out[:-1] if out else out


def _process_docstring(app, what, name, obj, options, lines):
    if name.split(".")[0] != "medtut":
        return
    lines[:] = plain_text_safe(list(lines))


# ---------------------------------------------------------------------------------------------------
# 2. names resolve the way Python resolves them
# ---------------------------------------------------------------------------------------------------

def _python_target(module_name: str | None, class_name: str | None, target: str):
    """The object ``target`` names inside ``module_name`` (and ``class_name``), or None."""
    target = re.sub(r"\s+", "", target).lstrip("~.")
    scopes = []
    if module_name:
        scopes.append(module_name)
    scopes.append(None)
    for scope in scopes:
        try:
            if scope is None:
                head, _, rest = target.partition(".")
                obj = importlib.import_module(head)
                path = rest.split(".") if rest else []
            else:
                obj = importlib.import_module(scope)
                path = ([class_name] if class_name else []) + target.split(".")
            for attr in path:
                if isinstance(obj, type(importlib)) and not hasattr(obj, attr):
                    obj = importlib.import_module(f"{obj.__name__}.{attr}")
                else:
                    obj = getattr(obj, attr)
            return obj
        except (ImportError, AttributeError, ValueError, TypeError):
            continue
    return None


def _documented_name(obj) -> str | None:
    if isinstance(obj, type(importlib)):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None


def _missing_reference(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    module_name, class_name = node.get("py:module"), node.get("py:class")
    if not (module_name or "").startswith("medtut") and not target.startswith("medtut"):
        return None
    domain = env.get_domain("py")
    obj = _python_target(module_name, class_name, target)
    if obj is None:
        # a short name the module does not import (``:func:`fit``` in a docstring that means
        # medtut.train.fit): linked when exactly one documented medtut object has that name
        short = re.sub(r"\s+", "", target).lstrip("~.")
        kinds = set(domain.objtypes_for_role(node["reftype"]) or [])
        matches = [name for name, entry in domain.objects.items()
                   if name.startswith("medtut.") and name.endswith("." + short) and entry.objtype in kinds]
        if len(matches) != 1:
            return None                 # a name that does not exist: -n reports it
        return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", matches[0], node, contnode)
    full = _documented_name(obj)
    if full and full != target:
        for role in ("obj", node["reftype"]):
            new = node.deepcopy()
            new["reftarget"] = full
            for key in ("py:module", "py:class"):
                new[key] = None
            resolved = domain.resolve_xref(env, node["refdoc"], app.builder, role, full, new, contnode)
            if resolved is not None:
                return resolved
    # a real object that is not part of the reference (private, imported, a TypeVar): code, no link
    return contnode


# ---------------------------------------------------------------------------------------------------
# 3. sphinx-codeautolink and sphinx-exercise's untitled sections
# ---------------------------------------------------------------------------------------------------

def _patch_codeautolink() -> None:
    from sphinx_codeautolink.extension import block

    analyser = block.CodeBlockAnalyser
    if getattr(analyser, "_medtut_untitled_sections", False) or not hasattr(analyser, "visit_section"):
        return                          # patched already, or a codeautolink whose internals moved on
    visit_section = analyser.visit_section

    def visit_section_with_or_without_title(self, node):
        visit_section(self, node)
        if not any(isinstance(child, nodes.title) for child in node.children):
            self.title_stack.append(self.title_stack[-1] if self.title_stack else "")

    analyser.visit_section = visit_section_with_or_without_title
    analyser._medtut_untitled_sections = True


def _document_public_constants(app) -> None:
    """Module constants listed in ``__all__`` are documented even without a ``#:`` comment."""
    from sphinx.ext.autodoc import DataDocumenter, ModuleDocumenter

    class PublicDataDocumenter(DataDocumenter):
        priority = DataDocumenter.priority + 1

        @classmethod
        def can_document_member(cls, member, membername, isattr, parent):
            if not isinstance(parent, ModuleDocumenter):
                return False
            public = getattr(parent.object, "__all__", None)
            return isattr or (public is not None and membername in public and not callable(member)
                              and not isinstance(member, type(importlib)))

        def should_suppress_value_header(self) -> bool:
            value = repr(self.object)
            return len(value) > 120 or "\n" in value or super().should_suppress_value_header()

    app.add_autodocumenter(PublicDataDocumenter, override=True)


def setup(app):
    _patch_codeautolink()
    _document_public_constants(app)
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("missing-reference", _missing_reference, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
