"""An admin form's values as a browser would post them back, read from the
page's HTML (not from the form object), so that a test posting a change page
sends every field and inline management form that other parts of the shop put
on it, and overrides only what it changes:

    url = f"/admin/catalog/product/{product.id}/change/"
    data = admin_form_values(client, url)
    client.post(url, {**data, "price": "9.90", "_save": "Save"})
"""

from html.parser import HTMLParser

# Buttons are sent only when clicked (the test names its own "_save"); a file
# input with no file chosen sends nothing Django reads.
_NOT_SENT = {"submit", "button", "image", "reset", "file"}


class _FormValues(HTMLParser):
    """Collects the successful controls of each <form> on the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[dict[str, str], list[tuple[str, str]]]] = []
        self._fields: list[tuple[str, str]] | None = None
        self._select: dict | None = None
        self._option: dict | None = None
        self._textarea: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value if value is not None else "" for name, value in attrs}
        if tag == "form":
            self._fields = []
            self.forms.append((attributes, self._fields))
            return
        if self._fields is None:
            return
        if tag == "input":
            self._input(attributes)
        elif tag == "select" and "name" in attributes and "disabled" not in attributes:
            self._select = {"name": attributes["name"], "multiple": "multiple" in attributes, "options": []}
        elif tag == "option" and self._select is not None:
            self._option = {"value": attributes.get("value"), "selected": "selected" in attributes, "text": ""}
            self._select["options"].append(self._option)
        elif tag == "textarea" and "name" in attributes and "disabled" not in attributes:
            self._textarea = {"name": attributes["name"], "text": ""}

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def _input(self, attributes):
        kind = attributes.get("type", "text").lower()
        if "name" not in attributes or "disabled" in attributes or kind in _NOT_SENT:
            return
        if kind in ("checkbox", "radio"):
            if "checked" in attributes:
                self._fields.append((attributes["name"], attributes.get("value", "on")))
            return
        self._fields.append((attributes["name"], attributes.get("value", "")))

    def handle_data(self, data):
        if self._option is not None:
            self._option["text"] += data
        elif self._textarea is not None:
            self._textarea["text"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._fields = None
        elif tag == "option":
            self._option = None
        elif tag == "select" and self._select is not None:
            self._select_done()
        elif tag == "textarea" and self._textarea is not None:
            text = self._textarea["text"]
            # HTML drops one newline right after <textarea> (Django's widget writes one).
            self._fields.append((self._textarea["name"], text[1:] if text.startswith("\n") else text))
            self._textarea = None

    def _select_done(self):
        select, self._select, self._option = self._select, None, None
        options = [
            (o["value"] if o["value"] is not None else o["text"].strip(), o["selected"]) for o in select["options"]
        ]
        chosen = [value for value, selected in options if selected]
        if not chosen and not select["multiple"] and options:
            chosen = [options[0][0]]  # a single select with nothing marked shows, and sends, its first option
        if not select["multiple"]:
            chosen = chosen[-1:]
        self._fields.extend((select["name"], value) for value in chosen)


def form_values(html: str, *, form_id: str | None = None) -> dict[str, str | list[str]]:
    """The values the form would submit: the one with id `form_id`, or else
    the page's one admin change form (its id ends in "_form"). A name sent
    more than once (a multiple select) maps to the list of its values."""
    parser = _FormValues()
    parser.feed(html)
    parser.close()
    if form_id is not None:
        matches = [fields for attributes, fields in parser.forms if attributes.get("id") == form_id]
    else:
        matches = [fields for attributes, fields in parser.forms if attributes.get("id", "").endswith("_form")]
    if len(matches) != 1:
        ids = [attributes.get("id") for attributes, _ in parser.forms]
        raise AssertionError(f"expected one form {form_id or '*_form'} on the page, found the forms {ids}")
    values: dict[str, str | list[str]] = {}
    for name, value in matches[0]:
        if name not in values:
            values[name] = value
        elif isinstance(values[name], list):
            values[name].append(value)
        else:
            values[name] = [values[name], value]
    return values


def admin_form_values(client, url: str, *, form_id: str | None = None) -> dict[str, str | list[str]]:
    """GET an admin add or change page and return its form's current values."""
    response = client.get(url)
    assert response.status_code == 200, f"GET {url} answered {response.status_code}"
    return form_values(response.content.decode(), form_id=form_id)
