"""Suite-wide test settings."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _float32_auto(monkeypatch, request):
    """Model assertions (batched == reference, losses, tiny-model learning) are
    calibrated in float32; on CPUs with AMX, dtype "auto" would pick bf16
    autocast. Tests that want bf16 ask for it by name; `hardware_dtype` tests
    see the real rule."""
    import thresher.models as models

    if request.node.get_closest_marker("hardware_dtype"):
        return
    real = models.resolve_dtype
    monkeypatch.setattr(models, "resolve_dtype",
                        lambda dtype, device_type="cpu": "float32" if dtype == "auto" else real(dtype, device_type))
