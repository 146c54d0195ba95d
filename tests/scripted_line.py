"""A serial line for driver tests that need no pseudo-terminal: each read returns the next
scripted chunk (what a fuzzer, or a captured exchange, says the line carries)."""


class ScriptedLine:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def write(self, data: bytes) -> None:
        pass

    def read(self, size: int) -> bytes:
        return self.read_some(size)

    def read_some(self, limit: int) -> bytes:
        return self.chunks.pop(0)[:limit] if self.chunks else b""

    def reset_input(self) -> None:
        pass

    def close(self) -> None:
        pass
