from __future__ import annotations

from controlplane.cli import main

raise SystemExit(main())
