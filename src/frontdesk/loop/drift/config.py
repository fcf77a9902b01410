"""The drift monitor's settings (``drift:`` in frontdesk.yaml) and the kinds of alert it raises."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frontdesk.errors import ConfigError, validation_message

AlertKind = Literal["unknown_rate", "unknown_rate_rise", "confidence_drop", "confidence_trend", "psi", "escalation_rate",
                    "accepted_accuracy"]
ALERT_KINDS: tuple[str, ...] = ("unknown_rate", "unknown_rate_rise", "confidence_drop", "confidence_trend", "psi",
                                "escalation_rate", "accepted_accuracy")


class DriftConfig(BaseModel):
    """What to watch and when to alert. Every ``*_alert`` threshold can be ``None`` (that alert is off).

    Window: ``window`` decisions (the most recent), or ``window_s`` seconds; give only ``window_s``
    for a purely time-based window, both to keep whichever is smaller.
    """

    model_config = ConfigDict(extra="forbid")

    window: int | None = Field(500, ge=1, description="number of most recent decisions in the rolling window")
    window_s: float | None = Field(None, gt=0, description="or: decisions of the last window_s seconds")
    min_window: int = Field(100, ge=1, description="decisions the window needs before any alert changes state")
    baseline_size: int | None = Field(None, ge=1, description="without a given baseline: freeze one from the first "
                                      "baseline_size decisions observed (default: window, or 500)")
    unknown_labels: list[str] = Field(default_factory=lambda: ["oos", "unknown"],
                                      description="labels that mean 'no known intent'")
    count_human_as_unknown: bool = Field(False, description="also count human-review decisions that carry a best "
                                         "guess as unknown (for routers with fallback='human')")
    unknown_rate_alert: float | None = Field(0.03, ge=0, le=1, description="alert when the window's unknown rate ≥ this")
    unknown_rate_rise_alert: float | None = Field(None, gt=0, le=1, description="alert when the unknown rate is this "
                                                  "much above the baseline's (for models with a high base rate)")
    confidence_drop_alert: float | None = Field(0.05, gt=0, le=1, description="alert when the mean primary-tier "
                                                "confidence is this much below the baseline's")
    confidence_slope_alert: float | None = Field(None, gt=0, description="alert when the mean confidence falls by at "
                                                 "least this much per window over the last trend_windows windows")
    trend_windows: int = Field(5, ge=2, description="completed windows the confidence trend is fitted over")
    psi_alert: float | None = Field(0.2, gt=0, description="alert when the label-distribution PSI (noise "
                                    "subtracted) ≥ this")
    psi_noise_correction: bool = Field(True, description="subtract the PSI that sampling noise alone would give")
    escalation_rate_alert: float | None = Field(None, ge=0, le=1, description="alert when the escalation rate ≥ this")
    hysteresis: float = Field(0.1, ge=0, lt=1, description="an alert clears below threshold × (1 − hysteresis)")
    recall_window: int = Field(500, ge=1, description="feedback items kept for per-label recall")
    accepted_accuracy_window: int = Field(1000, ge=1, description="labelled accepted decisions (feedback, review "
                                          "resolutions) kept for the accepted-accuracy estimate")
    accepted_accuracy_confidence: float = Field(0.95, gt=0, lt=1, description="coverage of its two-sided "
                                                "Clopper–Pearson interval")
    accepted_accuracy_min_labelled: int = Field(50, ge=1, description="labelled accepted decisions of the primary tier "
                                                "the accepted_accuracy alert needs before it changes state")
    accepted_accuracy_target: float | None = Field(None, gt=0, le=1, description="alert when the interval's upper bound "
                                                   "is below this (default: the target of the model's guarantee, "
                                                   "`frontdesk train --guarantee`; no target, no alert)")
    accepted_accuracy_alert: bool = Field(True, description="raise the accepted_accuracy alert (the gauges stay)")
    webhook_url: str | None = Field(None, description="POST each alert transition here as JSON")
    webhook_timeout_s: float = Field(2.0, gt=0, le=60, description="timeout of one alert POST")

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value

    @model_validator(mode="after")
    def _windows(self) -> DriftConfig:
        if self.window_s is not None and "window" not in self.model_fields_set:
            self.window = None  # window_s alone: a purely time-based window
        if self.window is None and self.window_s is None:
            raise ValueError("give window (decisions) or window_s (seconds)")
        if self.accepted_accuracy_min_labelled > self.accepted_accuracy_window:
            raise ValueError(f"accepted_accuracy_min_labelled ({self.accepted_accuracy_min_labelled}) is larger than "
                             f"accepted_accuracy_window ({self.accepted_accuracy_window}): the alert could never fire")
        if self.window is not None and self.min_window > self.window:
            raise ValueError(f"min_window ({self.min_window}) is larger than window ({self.window}): alerts could "
                             "never fire; lower min_window or widen the window")
        return self

    @classmethod
    def make(cls, **values: Any) -> DriftConfig:
        """Like ``DriftConfig(**values)`` but raises :class:`ConfigError` naming the field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc), field="drift") from exc

    @property
    def block_size(self) -> int:
        """Decisions per trend point when the window is count-based."""
        return self.window or 500
