"""The ID-card PDF, drawn on the fly with reportlab."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from reportlab.lib.pagesizes import A6, landscape
from reportlab.pdfgen import canvas


def render(name: str, client_id: str, env_label: str) -> bytes:
    buf = io.BytesIO()
    width, height = landscape(A6)
    pdf = canvas.Canvas(buf, pagesize=(width, height))
    pdf.setTitle(f"360Voice ID card - {name}")
    pdf.setFont("Helvetica-Bold", 16)
    pdf.drawString(24, height - 40, "Techhalo 360Voice ID card")
    pdf.setFont("Helvetica", 12)
    pdf.drawString(24, height - 80, f"Name: {name}")
    pdf.drawString(24, height - 100, f"Client ID: {client_id}")
    pdf.drawString(24, height - 120, f"Environment: {env_label}")
    pdf.drawString(24, height - 140, f"Issued: {datetime.now(UTC):%Y-%m-%d}")
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


def broken(pdf: bytes) -> bytes:
    """What a half-written upload looks like: the header survives, the document does not."""
    return pdf[:9] + b"\x00" * 64
