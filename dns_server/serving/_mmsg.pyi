"""Types of the compiled module `_mmsg.c`: recvmmsg and sendmmsg for the UDP listener."""

Address = tuple[str, int] | tuple[str, int, int, int]

MAX_BATCH: int

def receive(fd: int, limit: int) -> list[tuple[bytes, Address]]: ...
def send(fd: int, replies: list[tuple[bytes, Address]]) -> int: ...
