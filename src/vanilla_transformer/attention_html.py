"""The attention page: one self-contained HTML file (inline script and style, the data as embedded JSON).

`render_html(explorer_data(...))` fills the template `attention_explorer.html` (installed with the package) with
the data of `vanilla_transformer.attention.explorer_data`. The page loads nothing from the network, so it opens from
disk, offline, in any current browser.
"""

import json
import os
from importlib import resources

PLACEHOLDER = "__ATTENTION_DATA__"


def _template() -> str:
    return resources.files(__package__).joinpath("attention_explorer.html").read_text(encoding="utf-8")


def embed_json(data: object) -> str:
    """`data` as JSON that is safe inside a `<script>` element: `<`, `>` and `&` escaped as `\\u003c` etc.

    A token such as `</script>` can therefore never end the data early; `JSON.parse` reads the escapes back.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict) -> str:
    """The page for `data` (from `explorer_data`) as one HTML string."""
    template = _template()
    if template.count(PLACEHOLDER) != 1:
        raise RuntimeError(f"The page template must hold {PLACEHOLDER} exactly once.")
    return template.replace(PLACEHOLDER, embed_json(data))


def write_html(data: dict, path: str) -> str:
    """Write the page for `data` to `path` (folders created as needed) and return the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_html(data))
    return path
