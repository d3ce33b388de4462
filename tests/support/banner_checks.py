"""What the banner must be in every state, checked in real Chromium (issue 16).

``check_banner(page, state, artifacts)`` runs, for the light and the dark color scheme:
axe-core (from npm, ``client_js/node_modules``) on the banner and toast with the WCAG 2.0-2.2
A/AA rules, 0 violations; the contrast of every text against its background >= 4.5:1;
and, at 1280 px and 375 px wide, a screenshot, the card clear of the page's header controls,
and (at 1280 px) a one-line message. The axe results go to ``artifacts/axe-<state>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["AXE", "WIDTHS", "check_banner", "contrast_pairs", "run_axe"]

AXE = Path(__file__).resolve().parents[2] / "client_js" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {1280: 800, 375: 740}
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

# Every visible text of the banner and the toast, its color and the background it is drawn
# on (the nearest opaque one), with the WCAG 2 contrast ratio.
_CONTRAST = """
() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = ({ r, g, b }) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const up = (n) => (n.parentNode instanceof ShadowRoot ? n.parentNode.host : n.parentElement);
  const background = (el) => {
    for (let n = el; n; n = up(n)) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a > 0) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const root = document.querySelector("sessionwatch-banner").shadowRoot;
  const out = [];
  for (const el of root.querySelectorAll(".box:not([hidden]) :is(p, button), .toast:not([hidden]) :is(p, button)")) {
    const fg = parse(getComputedStyle(el).color), bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({ text: el.textContent, fg: getComputedStyle(el).color, bg: `rgb(${bg.r}, ${bg.g}, ${bg.b})`,
               alpha: fg.a * bg.a, ratio: (hi + 0.05) / (lo + 0.05) });
  }
  return out;
}
"""

_RECTS = """
() => {
  const root = document.querySelector("sessionwatch-banner").shadowRoot;
  const rect = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const cards = [...root.querySelectorAll(".box:not([hidden]), .toast:not([hidden])")].map(rect);
  const controls = [...document.querySelectorAll("header a, header button, header .who, header input")]
    .filter((el) => el.getClientRects().length).map((el) => [el.textContent.trim(), rect(el)]);
  const box = root.querySelector(".box:not([hidden]) p");
  const style = box && getComputedStyle(box);
  return { cards, controls, message: box && [box.getBoundingClientRect().height, parseFloat(style.lineHeight)] };
}
"""


async def contrast_pairs(page: Any) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = await page.evaluate(_CONTRAST)
    return pairs


async def run_axe(page: Any) -> dict[str, Any]:
    """axe-core on the banner host (its open shadow tree included), WCAG A/AA rules."""
    if not await page.evaluate("() => !!window.axe"):
        await page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = await page.evaluate(
        """async (tags) => {
             const r = await axe.run({ include: [["sessionwatch-banner"]] },
                                     { runOnly: { type: "tag", values: tags } });
             const brief = (list) => list.map((v) => ({ id: v.id, impact: v.impact,
               nodes: v.nodes.map((n) => n.target.join(" ") + (n.failureSummary ? ": " + n.failureSummary : "")) }));
             return { violations: brief(r.violations), passes: r.passes.map((p) => [p.id, p.nodes.length]),
                      incomplete: brief(r.incomplete) };
           }""",
        WCAG_TAGS,
    )
    return result


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


async def check_banner(page: Any, state: str, artifacts: Path) -> dict[str, Any]:
    """All of the above for the banner (or toast) now showing; returns the axe summary."""
    original = page.viewport_size
    summary: dict[str, Any] = {}
    try:
        for scheme in ("light", "dark"):
            await page.emulate_media(color_scheme=scheme)
            for width, height in WIDTHS.items():
                await page.set_viewport_size({"width": width, "height": height})
                await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r()))")
                await page.screenshot(path=str(artifacts / f"banner-{state}-{scheme}-{width}.png"))
                rects = await page.evaluate(_RECTS)
                assert rects["cards"], f"{state}: nothing shown"
                for card in rects["cards"]:
                    for name, control in rects["controls"]:
                        assert not _overlaps(card, control), (
                            f"{state} {scheme} {width}px: the card {card} covers the header's {name!r} {control}"
                        )
                if width == 1280 and rects["message"]:
                    height_px, line = rects["message"]
                    assert height_px < 1.5 * line, (
                        f"{state}: the message wraps at 1280 px ({height_px} px)"
                    )
            pairs = await contrast_pairs(page)
            assert pairs, f"{state}: no text found"
            for pair in pairs:
                assert pair["alpha"] == 1, pair
                assert pair["ratio"] >= 4.5, f"{state} {scheme}: {pair}"
            result = await run_axe(page)
            assert result["violations"] == [], f"{state} {scheme}: {result['violations']}"
            contrast_checked = dict(result["passes"]).get("color-contrast", 0)
            assert contrast_checked >= len(pairs), f"axe did not reach the shadow tree: {result}"
            summary[scheme] = {
                "violations": 0,
                "rules_passed": len(result["passes"]),
                "color_contrast_nodes": contrast_checked,
                "incomplete": [v["id"] for v in result["incomplete"]],
                "min_contrast": round(min(p["ratio"] for p in pairs), 2),
            }
    finally:
        await page.emulate_media(color_scheme="light")
        if original:
            await page.set_viewport_size(original)
    (artifacts / f"axe-{state}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
