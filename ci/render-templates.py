#!/usr/bin/env python3
"""Embeds the boot scripts into the deployable templates (stdlib only).

The scripts under templates-*/scripts/ are the source of truth. A cloud template must carry
its boot script inline, so this tool copies each script into its slot:

* templates-cfn/velociraptor.yaml: every block scalar introduced by a line of the form
  `- |  # embed: scripts/<file>` receives that file.
* templates-arm/velociraptor.json: the variables named in ARM_SLOTS receive their file.

The part the four scripts share lives in templates-common/boot-lib.sh. A script includes it
with this three-line stanza (<lib> relative to the script's directory):

    # include: <lib>
    # shellcheck source=SCRIPTDIR/<lib>
    source "$(dirname "${BASH_SOURCE[0]}")/<lib>"

In the repository the stanza sources the library (shellcheck and the tests follow it); in
the template it is replaced by the library's text between two marker comments, so each
template carries one self-contained script that sources nothing.

Usage: render-templates.py          rewrite the templates in place
       render-templates.py --check  exit 1 (naming the stale template) if a rewrite would change anything
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CFN_TEMPLATE = ROOT / "templates-cfn" / "velociraptor.yaml"
ARM_TEMPLATE = ROOT / "templates-arm" / "velociraptor.json"
ARM_SLOTS = {"serverScript": "scripts/server-boot.sh", "clientScript": "scripts/client-boot.sh"}
EMBED_LINE = re.compile(r"^(?P<indent> *)- \|  # embed: (?P<path>\S+)$")
INCLUDE_LINE = re.compile(r"^# include: (?P<lib>\S+)$")
LIB_DIRECTIVE = "# shellcheck shell=bash"


def include_stanza(lib):
    """The three lines that include `lib` in a boot script source."""
    return [
        f"# include: {lib}",
        f"# shellcheck source=SCRIPTDIR/{lib}",
        f'source "$(dirname "${{BASH_SOURCE[0]}}")/{lib}"',
    ]


def inlined(lib, text):
    """The library `lib` (as named in the stanza) as it appears in a rendered script."""
    if not text.startswith(LIB_DIRECTIVE + "\n"):
        raise SystemExit(f"{lib}: must start with the line '{LIB_DIRECTIVE}'")
    body = text[len(LIB_DIRECTIVE) + 1 :].rstrip("\n").split("\n")
    # Comment lines stay in the source: the CloudFormation template carries the library twice
    # and must stay within 51,200 bytes inline (and each user data within 16 KB). Blank
    # lines are kept: inside a heredoc they are content.
    code = [line for line in body if not line.lstrip().startswith("#")]
    return [f"# >>> {lib} (inlined by ci/render-templates.py, comments dropped)", *code, f"# <<< {lib}"]


def script_text(path):
    """The boot script at `path` with every include stanza replaced by its library."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n") or "\t" in text:
        raise SystemExit(f"{path.relative_to(ROOT)}: must end with a newline and contain no tabs")
    lines = text[:-1].split("\n")
    out = []
    i = 0
    while i < len(lines):
        match = INCLUDE_LINE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        lib = match.group("lib")
        if lines[i : i + 3] != include_stanza(lib):
            raise SystemExit(
                f"{path.relative_to(ROOT)}:{i + 1}: an include stanza is exactly these lines:\n"
                + "\n".join(include_stanza(lib))
            )
        lib_text = (path.parent / lib).read_text(encoding="utf-8")
        if "\t" in lib_text or any(INCLUDE_LINE.match(line) for line in lib_text.split("\n")):
            raise SystemExit(f"{lib}: must contain no tabs and no include stanza")
        out.extend(inlined(lib, lib_text))
        i += 3
    return "\n".join(out) + "\n"


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def render_cfn(text, base):
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        match = EMBED_LINE.match(line)
        if not match:
            continue
        body_indent = len(match.group("indent")) + 2
        # Skip the old block: blank lines and lines indented at least as deep as the body,
        # but leave trailing blank lines to the text that follows.
        end = i
        last_content = i
        while end < len(lines) and (lines[end].strip() == "" or indent_of(lines[end]) >= body_indent):
            if lines[end].strip():
                last_content = end + 1
            end += 1
        script = script_text(base / match.group("path"))
        pad = " " * body_indent
        out.extend(pad + s if s else "" for s in script[:-1].split("\n"))
        i = last_content
    return "\n".join(out)


def render_arm(text, base):
    template = json.loads(text)
    for variable, path in ARM_SLOTS.items():
        script = script_text(base / path)
        if script.startswith("["):
            script = "[" + script  # ARM reads a leading "[" as an expression
        template["variables"][variable] = script
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for path, render in ((CFN_TEMPLATE, render_cfn), (ARM_TEMPLATE, render_arm)):
        current = path.read_text(encoding="utf-8")
        rendered = render(current, path.parent)
        if rendered == current:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(rendered, encoding="utf-8")
            print(f"rendered {path.relative_to(ROOT)}")
    if stale:
        print("stale templates (run ci/render-templates.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
