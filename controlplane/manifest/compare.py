"""Comparing release manifests: same image, ran before, seen together, diff lines.

Two images are the same when their digests match; without a digest on either side, when
the image name (the repository's last path part: registries differ between environments)
and the tag match. A tag whose digests differ between environments was rebuilt: that
breaks "build once, promote many" as much as a tag never built on main.
"""

from __future__ import annotations

from typing import Any


def image_name(svc: dict[str, Any]) -> str:
    repo = str(svc.get("repository") or "")
    return repo.rsplit("/", 1)[-1]


def label(svc: dict[str, Any]) -> str:
    """How a service's image is shown: ``name:tag`` (``@sha256:abcdef12`` when no tag)."""
    if svc.get("missing"):
        return "(not deployed)"
    tag = svc.get("tag")
    if tag:
        return f"{image_name(svc)}:{tag}"
    digest = str(svc.get("digest") or "")
    return f"{image_name(svc)}@{digest[:15]}" if digest else image_name(svc) or "(no image)"


def same_image(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """True, False, or None for "same name and tag but other bytes" (rebuilt)."""
    if a.get("missing") or b.get("missing"):
        return False
    da, db = a.get("digest"), b.get("digest")
    if da and db and da == db:
        return True
    if image_name(a) != image_name(b) or a.get("tag") != b.get("tag") or not a.get("tag"):
        return False
    return None if (da and db) else True


def ran_before(svc: dict[str, Any], name: str, manifests: list[dict[str, Any]],
               ) -> bool | None:
    """Did any of ``manifests`` run this service's image? None: only a rebuild of its tag."""
    rebuilt = False
    for m in manifests:
        other = (m.get("services") or {}).get(name)
        if other is None:
            continue
        same = same_image(svc, other)
        if same:
            return True
        rebuilt = rebuilt or same is None
    return None if rebuilt else False


def seen_together(services: dict[str, Any], manifests: list[dict[str, Any]]) -> bool:
    """Was this exact combination of images one manifest of ``manifests``?"""
    for m in manifests:
        other = m.get("services") or {}
        if all(name in other and same_image(svc, other[name]) for name, svc in services.items()):
            return True
    return False


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per service of either manifest: ``same`` or ``changed`` with both sides."""
    sa, sb = a.get("services") or {}, b.get("services") or {}
    rows = []
    for name in sorted(set(sa) | set(sb)):
        x, y = sa.get(name, {"missing": True}), sb.get(name, {"missing": True})
        same_img = bool(same_image(x, y)) or (x.get("missing") and y.get("missing"))
        same_rev = x.get("helm_revision") == y.get("helm_revision")
        rows.append({"service": name, "same": bool(same_img and same_rev),
                     "a": _side(x), "b": _side(y)})
    return rows


def _side(svc: dict[str, Any]) -> dict[str, Any]:
    return {"image": label(svc), "digest": svc.get("digest"),
            "helm_release": svc.get("helm_release"), "helm_revision": svc.get("helm_revision")}


def diff_lines(rows: list[dict[str, Any]], name_a: str, name_b: str) -> list[str]:
    width = max((len(r["service"]) for r in rows), default=0)
    out = []
    for r in rows:
        a, b = r["a"], r["b"]
        if r["same"]:
            out.append(f"{r['service']:<{width}}  same     {a['image']}{_rev(a)}")
        else:
            out.append(f"{r['service']:<{width}}  differs  {name_a}: {a['image']}{_rev(a)}  "
                       f"{name_b}: {b['image']}{_rev(b)}")
    return out


def _rev(side: dict[str, Any]) -> str:
    rev = side.get("helm_revision")
    return f" (rev {rev})" if rev is not None else ""
