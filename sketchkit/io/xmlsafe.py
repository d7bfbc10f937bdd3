"""Defused XML for the SVG and InkML readers: text decoding and parsing with DTDs, entities and
external references refused, and an element cap checked while parsing.

A plain `<!DOCTYPE root PUBLIC "..." "...">` (or SYSTEM) line without an internal subset, as
Illustrator writes for SVG, can define nothing and is removed before parsing; any other DTD is
refused. Nothing is ever fetched. `what` ("SVG", "InkML") names the format in messages.
"""

from __future__ import annotations

import re

from sketchkit.errors import InputError

_XML_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))


def _simple_doctype(root: str) -> re.Pattern:
    return re.compile(rf"<!DOCTYPE\s+{root}(?:\s+PUBLIC\s+(\"[^\"]*\"|'[^']*')\s+(\"[^\"]*\"|'[^']*')"
                      r"|\s+SYSTEM\s+(\"[^\"]*\"|'[^']*'))?\s*>", re.IGNORECASE)


_SIMPLE_DOCTYPES = {"svg": _simple_doctype("svg"), "ink": _simple_doctype(r"(?:[\w.-]+:)?ink")}


def decode_xml(data: bytes, path, what: str) -> str:
    """XML bytes -> text: BOM (UTF-8, UTF-16, UTF-32), BOM-less UTF-16, the XML declaration's
    encoding, else UTF-8. InputError for bytes that are not text in that encoding."""
    encoding, skip = None, 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, skip = name, (0 if name == "utf-8-sig" else len(bom))
            break
    if encoding is None:
        if data[:2] == b"<\x00":
            encoding = "utf-16-le"
        elif data[:2] == b"\x00<":
            encoding = "utf-16-be"
        else:
            declared = _XML_ENCODING.match(data.lstrip()[:200])
            encoding = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    try:
        return data[skip:].decode(encoding)
    except LookupError:
        raise InputError(f"the {what} declares an unknown text encoding {encoding!r}", path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"the {what} is not valid {encoding} text (byte {exc.start})", path) from None


def parse_xml(text: str, path, what: str, max_elements: int, root: str = "svg"):
    """Root element of the defused parse of `text`; InputError for bad XML, DTDs (other than a
    plain `<!DOCTYPE root ...>` line) or more than `max_elements` elements."""
    import defusedxml
    import defusedxml.ElementTree as SafeET
    from xml.etree.ElementTree import ParseError, TreeBuilder

    text = _SIMPLE_DOCTYPES[root].sub("", text, count=1)

    class _TooManyElements(Exception):
        pass

    class CountingBuilder(TreeBuilder):
        count = 0

        def start(self, tag, attrs):
            self.count += 1
            if self.count > max_elements:
                raise _TooManyElements
            return super().start(tag, attrs)

    try:
        # start tags are the "<" not opening an end tag, a comment, CDATA or a processing instruction
        start_tags = text.count("<") - text.count("</") - text.count("<!") - text.count("<?")
        if start_tags <= max_elements:
            return SafeET.fromstring(text, forbid_dtd=True)
        parser = SafeET.DefusedXMLParser(target=CountingBuilder(), forbid_dtd=True)
        parser.feed(text)
        return parser.close()
    except _TooManyElements:
        raise InputError(f"the {what} has more than {max_elements:,} elements", path) from None
    except defusedxml.DTDForbidden:
        raise InputError(f"the {what} has a DTD (<!DOCTYPE ... [...]>); sketchkit refuses DTDs because entity "
                         "expansion and external references are unsafe", path) from None
    except defusedxml.EntitiesForbidden:
        raise InputError(f"the {what} defines XML entities, which sketchkit refuses (entity expansion is unsafe)",
                         path) from None
    except defusedxml.ExternalReferenceForbidden:
        raise InputError(f"the {what} references an external entity, which sketchkit never fetches", path) from None
    except defusedxml.DefusedXmlException as exc:
        raise InputError(f"the {what} uses an XML feature sketchkit refuses ({type(exc).__name__})", path) from None
    except ParseError as exc:
        raise InputError(f"not well-formed XML ({exc})", path) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"cannot parse the XML ({type(exc).__name__})", path) from None
