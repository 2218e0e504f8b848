#!/usr/bin/env python3
"""Embeds the boot scripts into the deployable templates (stdlib only).

The scripts under templates-*/scripts/ are the source of truth. A cloud template must carry
its boot script inline, so this tool copies each script into its slot:

* templates-cfn/velociraptor.yaml: every block scalar introduced by a line of the form
  `- |  # embed: scripts/<file>` receives that file verbatim.
* templates-arm/velociraptor.json: the variables named in ARM_SLOTS receive their file.

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
        script = (base / match.group("path")).read_text(encoding="utf-8")
        if not script.endswith("\n") or "\t" in script:
            raise SystemExit(f"{match.group('path')}: must end with a newline and contain no tabs")
        pad = " " * body_indent
        out.extend(pad + s if s else "" for s in script[:-1].split("\n"))
        i = last_content
    return "\n".join(out)


def render_arm(text, base):
    template = json.loads(text)
    for variable, path in ARM_SLOTS.items():
        script = (base / path).read_text(encoding="utf-8")
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
