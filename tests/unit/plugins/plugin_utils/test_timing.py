"""PhaseClock: exclusive phases, per-task marks, and the -vvv line built from them."""

from __future__ import annotations

from ansible_collections.pinned.winrm.plugins.plugin_utils._timing import PhaseClock, timing_line


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_phase_inside_another_pauses_it_so_phases_add_up_to_the_tasks_time() -> None:
    clock_time = FakeTime()
    clock = PhaseClock(clock_time)
    clock.start_task()
    with clock.phase("command"):
        clock_time.advance(0.010)
        with clock.phase("connect"):  # a reconnection while the command runs
            clock_time.advance(0.002)
        with clock.phase("auth"):
            clock_time.advance(0.003)
        clock_time.advance(0.005)
    timing = clock.task_timing()
    assert (timing["command_ms"], timing["connect_ms"], timing["auth_ms"]) == (15.0, 2.0, 3.0)
    assert timing["total_ms"] == 20.0


def test_task_timing_reports_only_what_happened_since_the_tasks_mark() -> None:
    clock_time = FakeTime()
    clock = PhaseClock(clock_time)
    clock.start_task()
    with clock.phase("auth"):
        clock_time.advance(0.5)
    clock.count(requests=3, bytes_out=100, bytes_in=50, auth_legs=2)
    clock.start_task()  # the next task on the same session
    with clock.phase("command"):
        clock_time.advance(0.25)
    clock.count(requests=2, bytes_out=10, bytes_in=5)
    timing = clock.task_timing()
    assert timing["auth_ms"] == 0.0 and timing["command_ms"] == 250.0
    assert (timing["requests"], timing["bytes_out"], timing["bytes_in"], timing["auth_legs"]) == (2, 10, 5, 0)


def test_the_line_names_the_phases_that_took_time_and_the_counts() -> None:
    line = timing_line({"connect_ms": 1.25, "proxy_ms": 0, "tls_ms": 3, "auth_ms": 12.4, "pool_open_ms": 30,
                        "command_ms": 120.2, "transfer_ms": 0, "requests": 7, "bytes_out": 12600, "bytes_in": 800,
                        "tcp_connects": 1, "auth_legs": 2, "transfer_bytes": 0, "total_ms": 170})
    assert line == ("connect 1.2ms, tls 3.0ms, auth 12ms, pool open 30ms, command 120ms; 7 request(s), 12.3 KiB out, "
                    "800 B in, 1 TCP connect(s), 2 auth leg(s); total 170ms")
