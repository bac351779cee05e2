"""What is wrong with a request, field by field: every validator in the service reports in this shape,
so a client fixes its request in one round trip whatever it sent."""

from dataclasses import dataclass

from webhook_service.domain.errors import ServiceError


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with a request, addressed by the path of the field it concerns."""

    field: str  # "image", "camera_control.config.zoom", "dynamic_masks[2].trajectories[0].x"; "" = body
    code: str  # machine-readable, e.g. "missing", "type", "enum", "unknown_field", "exclusive"
    message: str  # human sentence about the field

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class RequestInvalid(ServiceError):
    """Carries every problem found, so that a client can fix its request in one round trip."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field or '(body)'}: {p.message}" for p in problems))
        self.problems = problems
