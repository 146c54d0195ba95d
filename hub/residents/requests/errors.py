"""The residents' requests' one exception: what was refused, in Chinese and English, and the
HTTP status to answer with (always a 4xx: a resident's bad input is never a 500)."""


class RequestError(ValueError):
    def __init__(self, zh: str, en: str, status: int = 422, reason: str = "invalid") -> None:
        super().__init__(f"{zh} ({en})")
        self.zh, self.en, self.status, self.reason = zh, en, status, reason

    def detail(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en}


def not_found() -> RequestError:
    """Unknown ticket, another community's ticket and wrong PIN all get this same answer."""
    return RequestError("工单号或查询码不正确", "unknown ticket or wrong PIN", 404, "pin")
