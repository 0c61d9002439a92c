"""Public signs (公示牌) of 街巷: what a street's sign says — its 街长 or 巷长 (name, post,
organisation), its 小巷管家, the four duties (知情, 监督, 处置, 评价), a phone and a QR code
to the public report form of that street — who may print it, and the sign itself as a
printable A4 portrait SVG (text escaped by the XML writer; the QR code drawn as SVG paths
made by segno, no external image).

Sign data comes from the current street_assignments; the phone is the chief's, else the
street office's hotline (its `street_office` department)."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import segno
from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.errors import Forbidden, InvalidInput, NotFound
from gis.scope import SCOPED_READERS, covers

SVG_NS = "http://www.w3.org/2000/svg"
REPORT_PATH = "/report/street/{street_id}"
# Common CJK fonts first (Linux, Windows, macOS), so the Chinese renders wherever it opens.
FONT_FAMILY = ("'Noto Sans CJK SC', 'Source Han Sans SC', 'WenQuanYi Micro Hei', "
               "'Microsoft YaHei', 'PingFang SC', 'Noto Serif CJK SC', sans-serif")
ROLE_LABELS = {"street_chief": "街长", "alley_chief": "巷长"}
DUTIES = (("知情", "熟悉街巷基本情况，了解居民诉求"),
          ("监督", "监督街巷环境、秩序和设施管理"),
          ("处置", "发现问题及时处置或上报协调解决"),
          ("评价", "评价相关部门和单位的履职情况"))
SIGN_READERS = ("admin", *SCOPED_READERS, "street_chief")

# A4 portrait in millimetres (the SVG's user units).
WIDTH, HEIGHT = 210.0, 297.0
RED, INK, GREY = "#b71c1c", "#1f1f1f", "#555555"
QR_SIZE = 66.0  # mm, quiet zone included: scannable from about 1–2 m


@dataclass(frozen=True)
class Chief:
    """The street's 街长 or 巷长 now."""

    person_id: int
    name: str
    role: str  # street_chief | alley_chief
    post: str | None
    organisation: str | None
    phone: str | None

    @property
    def title(self) -> str:
        """街长 or 巷长."""
        return ROLE_LABELS.get(self.role, "街巷长")


@dataclass(frozen=True)
class Sign:
    """What one street's sign shows, and who is assigned to the street now."""

    street_id: int
    name: str
    road_class: str
    district_code: str
    district_name: str | None
    street_office_code: str | None
    street_office_name: str | None
    chief: Chief | None
    stewards: tuple[str, ...]
    hotline: str | None
    lon: float
    lat: float
    person_ids: frozenset[int]  # everyone assigned to the street now (chief and stewards)

    @property
    def phone(self) -> str | None:
        """The chief's phone, else the street office's hotline."""
        return (self.chief.phone if self.chief and self.chief.phone else None) or self.hotline

    @property
    def chief_title(self) -> str:
        """街长 or 巷长 (by the chief's role; by the road class while there is none)."""
        if self.chief is not None:
            return self.chief.title
        return "巷长" if self.road_class == "alley" else "街长"


# One row per street: its offices' names, the chief and stewards assigned now, the hotline,
# and the default point — the point of the street nearest its middle (the middle of the
# merged line; for a street in pieces, the point on it closest to its centroid).
_SIGN_SELECT = """
    SELECT s.id, s.name, s.road_class, s.district_code, s.street_office_code,
           district.name AS district_name, office.name AS street_office_name,
           hotline.phone AS hotline,
           (SELECT json_build_object('person_id', pe.id, 'name', pe.name, 'role', sa.role,
                                     'post', pe.post, 'organisation', pe.organisation,
                                     'phone', pe.phone)
            FROM street_assignments sa JOIN people pe ON pe.id = sa.person_id
            WHERE sa.street_id = s.id AND sa.role IN ('street_chief', 'alley_chief')
              AND sa.valid_from <= now() AND (sa.valid_to IS NULL OR sa.valid_to > now())
            ORDER BY sa.valid_from DESC, sa.id LIMIT 1) AS chief,
           ARRAY(SELECT pe.name
                 FROM street_assignments sa JOIN people pe ON pe.id = sa.person_id
                 WHERE sa.street_id = s.id AND sa.role = 'steward'
                   AND sa.valid_from <= now() AND (sa.valid_to IS NULL OR sa.valid_to > now())
                 ORDER BY pe.id) AS stewards,
           ARRAY(SELECT sa.person_id FROM street_assignments sa
                 WHERE sa.street_id = s.id AND sa.valid_from <= now()
                   AND (sa.valid_to IS NULL OR sa.valid_to > now())) AS person_ids,
           ST_X(mid.g) AS lon, ST_Y(mid.g) AS lat
    FROM streets s
    LEFT JOIN LATERAL (
        SELECT j.name FROM jurisdictions j
        WHERE j.level = 'district' AND j.code = s.district_code
          AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
        ORDER BY j.valid_from DESC LIMIT 1) district ON true
    LEFT JOIN LATERAL (
        SELECT j.name FROM jurisdictions j
        WHERE j.level = 'street' AND j.code = s.street_office_code
          AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
        ORDER BY j.valid_from DESC LIMIT 1) office ON true
    LEFT JOIN LATERAL (
        SELECT d.phone FROM departments d
        WHERE d.dept_type = 'street_office' AND d.jurisdiction_code = s.street_office_code
          AND d.phone IS NOT NULL
        ORDER BY d.id LIMIT 1) hotline ON true
    CROSS JOIN LATERAL (
        SELECT CASE WHEN GeometryType(m.line) = 'LINESTRING'
                    THEN ST_LineInterpolatePoint(m.line, 0.5)
                    ELSE ST_ClosestPoint(s.geom, ST_Centroid(s.geom)) END AS g
        FROM (SELECT ST_LineMerge(s.geom) AS line) m) mid
"""
_SIGN_BY_ID = text(_SIGN_SELECT + " WHERE s.id = :street_id")
_SIGNS_OF_OFFICE = text(_SIGN_SELECT + " WHERE s.street_office_code = :office "
                                       "ORDER BY s.name, s.id")
_OFFICE = text("""
    SELECT j.name FROM jurisdictions j WHERE j.level = 'street' AND j.code = :office
    ORDER BY (j.valid_to IS NULL) DESC, j.valid_from DESC LIMIT 1
""")


def _sign_of(row: Any) -> Sign:
    chief = row.chief
    return Sign(
        street_id=int(row.id), name=row.name, road_class=row.road_class,
        district_code=row.district_code, district_name=row.district_name,
        street_office_code=row.street_office_code, street_office_name=row.street_office_name,
        chief=None if chief is None else Chief(
            person_id=int(chief["person_id"]), name=chief["name"], role=chief["role"],
            post=chief["post"], organisation=chief["organisation"], phone=chief["phone"]),
        stewards=tuple(row.stewards), hotline=row.hotline,
        lon=float(row.lon), lat=float(row.lat),
        person_ids=frozenset(int(p) for p in row.person_ids))


def sign_for(conn: Connection, street_id: int) -> Sign:
    """The sign of street `street_id`; NotFound naming `street_id` for an unknown street."""
    row = conn.execute(_SIGN_BY_ID, {"street_id": street_id}).one_or_none()
    if row is None:
        raise NotFound(f"no street with id {street_id}", field="street_id")
    return _sign_of(row)


def signs_of_office(conn: Connection, office_code: str) -> tuple[str, list[Sign]]:
    """The street office's name and the signs of all its streets (by name). InvalidInput for
    a code that is not 9 digits, NotFound for an office with no jurisdiction or streets."""
    if not (len(office_code) == 9 and office_code.isascii() and office_code.isdigit()):
        raise InvalidInput(f"street_office must be a 9-digit street office code; got "
                           f"{office_code!r}", field="street_office")
    name = conn.scalar(_OFFICE, {"office": office_code})
    signs = [_sign_of(r) for r in conn.execute(_SIGNS_OF_OFFICE, {"office": office_code})]
    if name is None and not signs:
        raise NotFound(f"no street office with code {office_code}", field="street_office")
    return str(name or office_code), signs


def may_get(reader: Principal, sign: Sign) -> bool:
    """Whether `reader` may print this sign: admin; an operator, viewer or planner whose
    scope covers the street's district or street office (an empty scope: the whole city);
    a street chief or steward assigned to the street now."""
    if reader.has_any("admin") or covers(reader, sign.district_code, sign.street_office_code):
        return True
    return reader.has_any("street_chief") and reader.person_id in sign.person_ids


def check_role(reader: Principal) -> None:
    """Forbidden naming `role` for a user who may print no sign at all (dispatchers)."""
    if not reader.has_any(*SIGN_READERS):
        raise Forbidden(f"street signs need the role {' or '.join(SIGN_READERS)}; you have "
                        f"{', '.join(sorted(reader.roles))}", field="role")


def check_access(reader: Principal, sign: Sign) -> None:
    """Forbidden unless `reader` may print this sign (`may_get`): naming `role` for a role
    that prints no signs, `street_id` for a street outside the reader's scope."""
    check_role(reader)
    if not may_get(reader, sign):
        raise Forbidden(f"street {sign.street_id} ({sign.name}, {sign.street_office_code}) "
                        "is outside your scope: you may print the signs of streets in your "
                        "jurisdiction, or of the streets you are assigned to",
                        field="street_id")


def report_url(base_url: str, street_id: int) -> str:
    """The absolute URL of the street's public report form (what the QR code encodes)."""
    return base_url.rstrip("/") + REPORT_PATH.format(street_id=street_id)


# -- rendering -------------------------------------------------------------------------


def _em(value: str) -> float:
    """The width of `value` in ems (CJK and full-width characters 1, others about half)."""
    return sum(1.0 if ord(ch) >= 0x2E80 else 0.56 for ch in value)


def _fit(value: str, width: float, size: float) -> float:
    """The largest font size up to `size` at which `value` fits in `width`."""
    em = _em(value)
    return size if em * size <= width else round(width / em, 2)


def _wrap(value: str, width: float, size: float, max_lines: int) -> list[str]:
    """`value` broken into lines of at most `width` at `size` (the last line ends in … when
    it does not all fit)."""
    lines: list[str] = []
    line = ""
    for token in re.findall(r"[!-~]+|\s|.", value):  # a Latin word, a space or a character
        if line and _em(line + token) * size > width:
            lines.append(line.rstrip())
            line = token.lstrip()
        else:
            line += token
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:-1] + "…"
    return lines


def _name_lines(names: tuple[str, ...], width: float, size: float,
                max_lines: int) -> list[str]:
    """Names joined by 、 in lines of at most `width` at `size`, never splitting a name;
    when they do not all fit, the last line ends with "等 N 人" (N: all of them)."""
    lines: list[list[str]] = [[]]
    for name in names:
        if lines[-1] and _em("、".join([*lines[-1], name])) * size > width:
            lines.append([])
        lines[-1].append(name)
    if len(lines) <= max_lines:
        return ["、".join(line) for line in lines]
    kept = lines[:max_lines]
    more = f" 等 {len(names)} 人"
    while len(kept[-1]) > 1 and _em("、".join(kept[-1]) + more) * size > width:
        kept[-1].pop()
    return ["、".join(line) for line in kept[:-1]] + ["、".join(kept[-1]) + more]


def _text(parent: ET.Element, x: float, y: float, value: str, size: float, *,
          fill: str = INK, anchor: str = "start", bold: bool = False) -> ET.Element:
    element = ET.SubElement(parent, "text", {
        "x": f"{x:g}", "y": f"{y:g}", "font-size": f"{size:g}", "fill": fill,
        "text-anchor": anchor})
    if bold:
        element.set("font-weight", "bold")
    element.text = value  # escaped by the writer
    return element


def qr_code(url: str) -> segno.QRCode:
    """The QR code of `url` (error correction M: readable with a quarter of a module row
    dirty or scratched)."""
    return segno.make(url, error="m", micro=False)


def qr_element(url: str, x: float, y: float, size: float) -> ET.Element:
    """The QR code of `url` as an SVG group (white quiet zone + segno's path) of `size` mm
    at (x, y)."""
    qr = qr_code(url)
    buffer = io.BytesIO()
    qr.save(buffer, kind="svg", border=4, xmldecl=False, nl=False, svgclass=None,
            lineclass=None)
    source = ET.fromstring(buffer.getvalue())
    modules = float(source.get("width", "0"))
    group = ET.Element("g", {"transform": f"translate({x:g} {y:g}) scale({size / modules:g})",
                             "shape-rendering": "crispEdges"})
    ET.SubElement(group, "rect", {"width": f"{modules:g}", "height": f"{modules:g}",
                                  "fill": "#ffffff"})
    for path in source.iter(f"{{{SVG_NS}}}path"):
        ET.SubElement(group, "path", dict(path.attrib))
    return group


def render_svg(sign: Sign, url: str) -> str:
    """The sign as a standalone SVG document: A4 portrait (210 × 297 mm; prints at 100 %,
    scales to a 60 × 85 cm board without loss)."""
    svg = ET.Element("svg", {
        "xmlns": SVG_NS, "version": "1.1", "width": f"{WIDTH:g}mm", "height": f"{HEIGHT:g}mm",
        "viewBox": f"0 0 {WIDTH:g} {HEIGHT:g}", "font-family": FONT_FAMILY,
        "class": "gridops-sign", "data-street-id": str(sign.street_id)})
    ET.SubElement(svg, "title").text = f"街巷长公示牌 · {sign.name}"
    ET.SubElement(svg, "rect", {"width": f"{WIDTH:g}", "height": f"{HEIGHT:g}",
                                "fill": "#ffffff"})
    ET.SubElement(svg, "rect", {"x": "6", "y": "6", "width": "198", "height": "285",
                                "fill": "none", "stroke": RED, "stroke-width": "1.4"})
    ET.SubElement(svg, "rect", {"x": "8", "y": "8", "width": "194", "height": "34",
                                "fill": RED})
    _text(svg, 105, 30, "街巷长公示牌", 14, fill="#ffffff", anchor="middle", bold=True)
    _text(svg, 105, 38.5, "STREET CHIEF NOTICE BOARD", 3.6, fill="#ffd7d2", anchor="middle")

    _text(svg, 105, 64, sign.name, _fit(sign.name, 180, 16), anchor="middle", bold=True)
    where = " · ".join(n for n in (sign.district_name, sign.street_office_name) if n)
    if where:
        _text(svg, 105, 74, where, _fit(where, 180, 5), fill=GREY, anchor="middle")
    ET.SubElement(svg, "line", {"x1": "16", "y1": "81", "x2": "194", "y2": "81",
                                "stroke": RED, "stroke-width": "0.5"})

    _text(svg, 20, 97, sign.chief_title, 7, fill=RED, bold=True)
    chief = sign.chief
    _text(svg, 48, 97, chief.name if chief else "（待定）", _fit(
        chief.name if chief else "（待定）", 146, 9), bold=True)
    post = " · ".join(v for v in ((chief.post, chief.organisation) if chief else ()) if v)
    if post:
        _text(svg, 48, 106, post, _fit(post, 146, 4.6), fill=GREY)

    _text(svg, 20, 121, "小巷管家", 5.5, fill=RED, bold=True)
    stewards = _name_lines(sign.stewards, 142, 5.5, 3) if sign.stewards else ["—"]
    for k, line in enumerate(stewards):
        _text(svg, 48, 121 + 7.5 * k, line, 5.5)

    _text(svg, 20, 149, "职　责", 5.5, fill=RED, bold=True)
    for k, (duty, explanation) in enumerate(DUTIES):
        y = 149 + 9 * k
        _text(svg, 48, y, duty, 5.5, bold=True)
        _text(svg, 64, y, explanation, _fit(explanation, 128, 4.8))
    ET.SubElement(svg, "line", {"x1": "16", "y1": "187", "x2": "194", "y2": "187",
                                "stroke": RED, "stroke-width": "0.5"})

    _text(svg, 20, 202, "联系电话", 5.5, fill=RED, bold=True)
    phone = sign.phone or "—"
    _text(svg, 20, 216, phone, _fit(phone, 100, 10), bold=True)
    if sign.chief is None or not sign.chief.phone:
        _text(svg, 20, 223, "街道办事处值班电话", 3.8, fill=GREY)
    for k, line in enumerate(("扫描右侧二维码", f"拍照反映街巷问题，直达{sign.chief_title}")):
        _text(svg, 20, 236 + 7.5 * k, line, _fit(line, 100, 5.2))
    for k, line in enumerate(_wrap("Scan the QR code to report a problem on this street "
                                   "(no sign-in needed)", 100, 3.4, 2)):
        _text(svg, 20, 256 + 5 * k, line, 3.4, fill=GREY)

    svg.append(qr_element(url, 130, 192, QR_SIZE))
    _text(svg, 163, 263, url, _fit(url, QR_SIZE + 6, 2.6), fill=GREY, anchor="middle")

    ET.SubElement(svg, "line", {"x1": "16", "y1": "271", "x2": "194", "y2": "271",
                                "stroke": RED, "stroke-width": "0.3"})
    footer = f"{sign.street_office_name or sign.district_name or ''} 监制 · 公示牌编号 " \
             f"{sign.street_id}".strip()
    _text(svg, 105, 282, footer, _fit(footer, 180, 4), fill=GREY, anchor="middle")
    return ET.tostring(svg, encoding="unicode")


def render_document(sign: Sign, url: str) -> str:
    """`render_svg` with the XML declaration (a file of its own)."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + render_svg(sign, url) + "\n"


# -- the public view ---------------------------------------------------------------------

# The classes the public form offers: the event majors a passer-by sees on a street —
# 市容环境, 宣传广告, 街面秩序 (GB/T 30428.2 majors 01, 02, 05) — or, in a catalog without
# them, every active event class.
PUBLIC_MAJORS = ("01", "02", "05")
_PUBLIC_CLASSES = text("""
    WITH picked AS (
        SELECT kind, code, name, major_code, major_name FROM event_classes
        WHERE active AND kind = 'event' AND major_code = ANY(:majors))
    SELECT kind, code, name, major_code, major_name FROM picked
    UNION ALL
    SELECT kind, code, name, major_code, major_name FROM event_classes
    WHERE active AND kind = 'event' AND NOT EXISTS (SELECT 1 FROM picked)
    ORDER BY 1, 2
""")


def public_classes(conn: Connection) -> list[dict[str, Any]]:
    """The event classes the public report form offers ({kind, code, name, major_code,
    major_name}, by code)."""
    return [dict(r) for r in conn.execute(
        _PUBLIC_CLASSES, {"majors": list(PUBLIC_MAJORS)}).mappings()]


def public_view(conn: Connection, street_id: int) -> dict[str, Any]:
    """What the public report form of a street shows: the street, its chief (name, role,
    title, phone — as on the printed sign; no steward contacts), the default position and
    the classes offered. NotFound naming `street_id` for an unknown street."""
    sign = sign_for(conn, street_id)
    chief = sign.chief
    return {
        "street": {"id": sign.street_id, "name": sign.name,
                   "district": sign.district_name, "street_office": sign.street_office_name},
        "chief": None if chief is None else {"name": chief.name, "role": chief.role,
                                             "title": chief.title, "phone": chief.phone},
        "phone": sign.phone,
        "default_point": {"lon": round(sign.lon, 7), "lat": round(sign.lat, 7)},
        "classes": public_classes(conn),
    }


def street_name(conn: Connection, street_id: int) -> str | None:
    """The name of street `street_id`, or None when there is none."""
    name = conn.scalar(text("SELECT name FROM streets WHERE id = :id"), {"id": street_id})
    return None if name is None else str(name)
